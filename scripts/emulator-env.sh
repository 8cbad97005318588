# Sourced by the demo and bench scripts: starts the emulator on a free
# loopback port, exports EMULATOR_URL, and stops it when the script exits.
emu_dir=$(mktemp -d)
.venv/bin/python tests/emulator/server.py --host 127.0.0.1 --port 0 \
  --port-file "$emu_dir/port" >"$emu_dir/log" 2>&1 &
emu_pid=$!
trap 'kill $emu_pid 2>/dev/null; wait $emu_pid 2>/dev/null; rm -rf "$emu_dir"' EXIT
for _ in $(seq 1 100); do
  [[ -s $emu_dir/port ]] && break
  kill -0 $emu_pid 2>/dev/null || { cat "$emu_dir/log" >&2; echo "emulator failed to start" >&2; exit 1; }
  sleep 0.1
done
[[ -s $emu_dir/port ]] || { echo "emulator did not start in 10 s" >&2; exit 1; }
export EMULATOR_URL="http://127.0.0.1:$(cat "$emu_dir/port")"
# Dummy credentials for the emulator; never real ones.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_PROFILE
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
