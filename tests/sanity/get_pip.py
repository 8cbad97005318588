"""Stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test makes an empty virtual environment per sanity test and
downloads get-pip.py from ci-files.testing.ansible.com to put pip in it; this
machine reaches PyPI but not that host. scripts/sanity.sh saves this file
where ansible-test caches the download. It does what get-pip.py does: puts
pip in the running interpreter (from CPython's own ensurepip wheel), then
runs `pip install <arguments>`, so the pip version and the pinned sanity
requirements ansible-test asks for come from PyPI as usual.
"""
import ensurepip
import importlib
import runpy
import sys

ensurepip.bootstrap(upgrade=True)
importlib.invalidate_caches()
# get-pip.py's own switches (it would otherwise add setuptools and wheel).
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}
sys.argv = ["pip", "install"] + [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
