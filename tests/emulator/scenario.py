"""Drives a lifecycle scenario on the emulator with boto3 (test tooling).

  scenario.py --endpoint URL world --bootstrap PATH [--metadata JSON] [--group G] [--domain D]
                                  [--private-zone first|last] [--stand-in CONTINUE|ABANDON|none]
  scenario.py --endpoint URL scale --group G --desired N
  scenario.py --endpoint URL wait --group G --in-service N [--timeout S]
  scenario.py --endpoint URL state --group G
  scenario.py --endpoint URL hook --group G --name H --transition T --metadata JSON
  scenario.py --endpoint URL publish --group G --message TEXT     (to the group's lifecycle topic)
  scenario.py --endpoint URL faults --rules JSON
  scenario.py --endpoint URL eips --pool NAME --count N
  scenario.py --endpoint URL invoke --group G --payload JSON          (direct, waits)
  scenario.py --endpoint URL tamper        (drop one record, add a stale one)
  scenario.py --endpoint URL terminate --instance ID   (scale in that instance)
  scenario.py --endpoint URL iam-role --name NAME      (a role Lambda may assume)
  scenario.py --endpoint URL bundle --tamper --save FILE  (the deploy bundle in S3 altered; the original to FILE)
  scenario.py --endpoint URL bundle --put FILE          (FILE back in the deploy bundle's place)

Prints one JSON object. Dummy credentials only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import boto3

REGION = "us-east-1"


def client(args: argparse.Namespace, service: str):  # noqa: ANN201
    return boto3.client(service, region_name=REGION, endpoint_url=args.endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def world(args: argparse.Namespace) -> dict:
    r53, sns, lam, iam, ec2, asg = (client(args, s) for s in ("route53", "sns", "lambda", "iam", "ec2", "autoscaling"))
    # First: IAM takes a moment before Lambda may assume a new role.
    role = iam.create_role(RoleName=f"{args.group}-lambda", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    zone_id = None
    private_zone_id = None

    def private_zone() -> str:
        # Split horizon: a private zone of the same name (VPC-internal answers).
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        z = r53.create_hosted_zone(Name=args.zone, CallerReference=f"private-{args.zone}",
                                   HostedZoneConfig={"PrivateZone": True, "Comment": "split horizon"},
                                   VPC={"VPCRegion": REGION, "VPCId": vpc})
        return z["HostedZone"]["Id"].split("/")[-1]

    if args.zone and args.private_zone == "first":
        private_zone_id = private_zone()
    if args.zone:
        zone = r53.create_hosted_zone(Name=args.zone, CallerReference=f"zone-{args.zone}")
        zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    if args.zone and args.private_zone == "last":
        private_zone_id = private_zone()
    topic = sns.create_topic(Name=f"{args.group}-lifecycle")["TopicArn"]
    fn = None
    if args.bootstrap:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o755 << 16
            with open(args.bootstrap, "rb") as f:
                zf.writestr(info, f.read())
        # The role was made a moment ago: like AWS, the emulator refuses it for
        # a couple of seconds (IAM propagation); retry as a careful client does.
        for attempt in range(40):
            try:
                fn = lam.create_function(FunctionName=f"{args.group}-route53", Runtime="provided.al2023", Role=role,
                                         Handler="bootstrap", Code={"ZipFile": buf.getvalue()}, Timeout=30,
                                         Architectures=["x86_64"])["FunctionArn"]
                break
            except lam.exceptions.InvalidParameterValueException as e:
                if "cannot be assumed" not in str(e) or attempt == 39:
                    raise
                time.sleep(0.25)
        sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=fn)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    lt = ec2.create_launch_template(LaunchTemplateName=f"{args.group}-lt",
                                    LaunchTemplateData={"ImageId": image, "InstanceType": "t3.nano"})
    subnet = ec2.describe_subnets()["Subnets"][0]
    if args.subnet_cidr:
        # Peers tests: a VPC on 127.x addresses gives instances private IPs a
        # test can bind haproxy nodes to (AWS would refuse the CIDR; moto does not).
        vpc = ec2.create_vpc(CidrBlock=args.subnet_cidr)["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=args.subnet_cidr)["Subnet"]
    elif args.no_public_ip:
        # As in AWS, a non-default subnet maps no public IPs on launch.
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="172.31.200.0/24")["Subnet"]
    tags = [{"ResourceId": args.group, "ResourceType": "auto-scaling-group", "Key": "Name", "Value": args.group,
             "PropagateAtLaunch": True}]
    if args.domain:
        tags.append({"ResourceId": args.group, "ResourceType": "auto-scaling-group", "Key": "domain",
                     "Value": args.domain, "PropagateAtLaunch": True})
    asg.create_auto_scaling_group(AutoScalingGroupName=args.group, MinSize=0, MaxSize=20, DesiredCapacity=0,
                                  LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]},
                                  VPCZoneIdentifier=subnet["SubnetId"], Tags=tags)
    # As launch-lb.yml makes them: the launching hook holds a new instance
    # until its node completes the action itself (no notification target);
    # the terminating hook notifies the Lambda; the group tells the Lambda
    # when an instance entered service or is gone.
    hooks = () if args.no_hooks else ((f"{args.group}-launching", "autoscaling:EC2_INSTANCE_LAUNCHING", "ABANDON"),
                                       (f"{args.group}-terminating", "autoscaling:EC2_INSTANCE_TERMINATING", "CONTINUE"))
    for name, transition, default in hooks:
        launching = transition.endswith("LAUNCHING")
        hook = {"AutoScalingGroupName": args.group, "LifecycleHookName": name, "LifecycleTransition": transition,
                "HeartbeatTimeout": args.launch_heartbeat if launching else args.heartbeat,
                "DefaultResult": default}
        if transition.endswith("TERMINATING"):
            hook.update(NotificationTargetARN=topic, RoleARN=role)
        if args.metadata:
            hook["NotificationMetadata"] = args.metadata
        asg.put_lifecycle_hook(**hook)
    asg.put_notification_configuration(AutoScalingGroupName=args.group, TopicARN=topic,
                                       NotificationTypes=["autoscaling:EC2_INSTANCE_LAUNCH",
                                                          "autoscaling:EC2_INSTANCE_TERMINATE"])
    if not args.no_hooks and args.stand_in != "none":
        # No node boots in these tests: the emulator completes each launch
        # as a node that became ready would.
        stand_in(args, args.group, args.stand_in)
    return {"zone_id": zone_id, "private_zone_id": private_zone_id, "topic": topic, "function": fn}


def stand_in(args: argparse.Namespace, group: str, result: str | None) -> dict:
    import urllib.request
    body = json.dumps({"group": group, "result": result, "after_seconds": 0}).encode()
    req = urllib.request.Request(f"{args.endpoint}/_craftlb/autoscaling/stand-in", method="POST", data=body)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def hook(args: argparse.Namespace) -> dict:
    """Sets a hook's metadata (the hook keeps the rest: AWS's update)."""
    client(args, "autoscaling").put_lifecycle_hook(
        AutoScalingGroupName=args.group, LifecycleHookName=args.name, LifecycleTransition=args.transition,
        NotificationMetadata=args.metadata)
    return {"hook": args.name}


def publish(args: argparse.Namespace) -> dict:
    topic = args.topic_arn or f"arn:aws:sns:{REGION}:123456789012:{args.group}-lifecycle"
    return {"message_id": client(args, "sns").publish(TopicArn=topic, Message=args.message)["MessageId"]}


def faults(args: argparse.Namespace) -> dict:
    import urllib.request
    req = urllib.request.Request(f"{args.endpoint}/_craftlb/faults", method="PUT", data=args.rules.encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def invoke(args: argparse.Namespace) -> dict:
    import urllib.request
    req = urllib.request.Request(f"{args.endpoint}/_craftlb/lambda/invoke/{args.group}-route53", method="POST",
                                 data=args.payload.encode())
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def tamper(args: argparse.Namespace) -> dict:
    """Loses one instance's record and leaves the record and health check of
    an instance that is gone (a lost terminating event): what lost events
    leave behind. The stale check carries the group's tags, as the Lambda's do."""
    r53 = client(args, "route53")
    zone = r53.list_hosted_zones()["HostedZones"][0]["Id"]
    recs = [r for r in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"] if r["Type"] == "A"]
    lost = recs[0]
    gone = "i-00000000000000000"
    # The Lambda's caller-reference layout: craftlb-lc-<sha256(record)[:8]>-<instance>-<hash>.
    prefix = hashlib.sha256(lost["Name"].lower().encode()).hexdigest()[:8]
    check = r53.create_health_check(
        CallerReference=f"craftlb-lc-{prefix}-{gone}-00000000",
        HealthCheckConfig={"Type": "TCP", "IPAddress": "52.94.0.250", "Port": 443})["HealthCheck"]["Id"]
    r53.change_tags_for_resource(ResourceType="healthcheck", ResourceId=check, AddTags=[
        {"Key": "craftlb:group", "Value": args.group}, {"Key": "craftlb:instance-id", "Value": gone}])
    stale = {"Name": lost["Name"], "Type": "A", "SetIdentifier": gone, "Weight": 1, "TTL": 60,
             "ResourceRecords": [{"Value": "52.94.0.250"}], "HealthCheckId": check}
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "DELETE", "ResourceRecordSet": lost}, {"Action": "CREATE", "ResourceRecordSet": stale}]})
    return {"lost": lost["SetIdentifier"], "stale": stale["SetIdentifier"], "stale_check": check}


def eips(args: argparse.Namespace) -> dict:
    ec2 = client(args, "ec2")
    out = []
    for _ in range(args.count):
        a = ec2.allocate_address(Domain="vpc")
        ec2.create_tags(Resources=[a["AllocationId"]], Tags=[{"Key": "craftlb:pool", "Value": args.pool}])
        out.append(a["PublicIp"])
    return {"eips": out}


def network(args: argparse.Namespace) -> dict:
    """The default VPC, two of its subnets and an image, for tasks that launch."""
    ec2 = client(args, "ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"])
    return {"vpc_id": vpc, "subnets": subnets[:2], "image_id": ec2.describe_images()["Images"][0]["ImageId"]}


def associate(args: argparse.Namespace) -> dict:
    """Runs an instance and associates a free address of the pool with it (what the Lambda does)."""
    ec2 = client(args, "ec2")
    free = [a for a in ec2.describe_addresses(Filters=[{"Name": "tag:craftlb:pool", "Values": [args.pool]}])["Addresses"]
            if "AssociationId" not in a]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.nano")["Instances"][0]
    # As on AWS, a pending instance cannot take an address yet: wait until it runs.
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance["InstanceId"]],
                                            WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ec2.associate_address(AllocationId=free[0]["AllocationId"], InstanceId=instance["InstanceId"])
    return {"instance_id": instance["InstanceId"], "public_ip": free[0]["PublicIp"]}


def disassociate(args: argparse.Namespace) -> dict:
    """Disassociates every address of the pool (as terminating their instances would)."""
    ec2 = client(args, "ec2")
    done = []
    for a in ec2.describe_addresses(Filters=[{"Name": "tag:craftlb:pool", "Values": [args.pool]}])["Addresses"]:
        if "AssociationId" in a:
            ec2.disassociate_address(AssociationId=a["AssociationId"])
            done.append(a["PublicIp"])
    return {"disassociated": done}


def complete(args: argparse.Namespace) -> dict:
    """Completes the lifecycle action of an instance (what the Lambda or a node does)."""
    client(args, "autoscaling").complete_lifecycle_action(
        AutoScalingGroupName=args.group, LifecycleHookName=args.hook, InstanceId=args.instance,
        LifecycleActionResult=args.result)
    return {"completed": args.instance}


def iam_role(args: argparse.Namespace) -> dict:
    """A role Lambda may assume (for examples that name one)."""
    role = client(args, "iam").create_role(RoleName=args.name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    return {"arn": role["Role"]["Arn"]}


def bundle(args: argparse.Namespace) -> dict:
    """The deploy bundle in S3 (the one object named bundle-<sha256>.tar.gz),
    altered as a compromised or corrupted object would be: still a valid
    bundle (one member added), so only its hash tells it apart."""
    s3 = client(args, "s3")
    found = [(b["Name"], o["Key"]) for b in s3.list_buckets()["Buckets"]
             for o in s3.list_objects_v2(Bucket=b["Name"]).get("Contents", [])
             if o["Key"].rsplit("/", 1)[-1].startswith("bundle-") and o["Key"].endswith(".tar.gz")]
    if len(found) != 1:
        raise SystemExit(f"expected one deploy bundle in S3, found {found}")
    bucket, key = found[0]
    if args.put:
        body = Path(args.put).read_bytes()
    elif not args.save:
        raise SystemExit("bundle --tamper needs --save FILE for the original")
    else:
        original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        Path(args.save).write_bytes(original)
        out = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(original), mode="r:gz") as src, \
                tarfile.open(fileobj=out, mode="w:gz") as dst:
            for member in src.getmembers():
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
            extra = b"not what the launch packed\n"
            info = tarfile.TarInfo("TAMPERED")
            info.size = len(extra)
            dst.addfile(info, io.BytesIO(extra))
        body = out.getvalue()
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return {"bucket": bucket, "key": key, "sha256": hashlib.sha256(body).hexdigest()}


def scale(args: argparse.Namespace) -> dict:
    client(args, "autoscaling").set_desired_capacity(AutoScalingGroupName=args.group, DesiredCapacity=args.desired)
    return {"desired": args.desired}


def terminate(args: argparse.Namespace) -> dict:
    """Scale-in of one chosen instance (desired capacity decremented)."""
    act = client(args, "autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=args.instance, ShouldDecrementDesiredCapacity=True)["Activity"]
    return {"activity": act.get("Description", "")}


def instances(args: argparse.Namespace) -> list[dict]:
    groups = client(args, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[args.group])
    out = []
    for g in groups["AutoScalingGroups"]:
        ids = [i["InstanceId"] for i in g["Instances"]]
        ips = {}
        if ids:
            for r in client(args, "ec2").describe_instances(InstanceIds=ids)["Reservations"]:
                for i in r["Instances"]:
                    ips[i["InstanceId"]] = (i.get("PublicIpAddress"), i.get("PrivateIpAddress"))
        out += [{"id": i["InstanceId"], "state": i["LifecycleState"],
                 "public_ip": ips.get(i["InstanceId"], (None, None))[0],
                 "private_ip": ips.get(i["InstanceId"], (None, None))[1]}
                for i in g["Instances"]]
    return out


def state(args: argparse.Namespace) -> dict:
    r53 = client(args, "route53")
    records = []
    for z in r53.list_hosted_zones()["HostedZones"]:
        rrs = r53.list_resource_record_sets(HostedZoneId=z["Id"])["ResourceRecordSets"]
        records += [{"zone_id": z["Id"].split("/")[-1], "private_zone": z.get("Config", {}).get("PrivateZone", False),
                     "name": r["Name"], "set_identifier": r.get("SetIdentifier"), "ip": r["ResourceRecords"][0]["Value"],
                     "ttl": r.get("TTL"), "weight": r.get("Weight"), "health_check_id": r.get("HealthCheckId")}
                    for r in rrs if r["Type"] == "A"]
    checks = r53.list_health_checks(MaxItems="1000")["HealthChecks"]
    return {"instances": instances(args), "records": records,
            "health_checks": [{"id": c["Id"], "ip": c["HealthCheckConfig"].get("IPAddress")} for c in checks]}


def wait(args: argparse.Namespace) -> dict:
    deadline = time.monotonic() + args.timeout
    while True:
        inst = instances(args)
        if len([i for i in inst if i["state"] == "InService"]) == args.in_service and len(inst) == args.in_service:
            return {"instances": inst}
        if time.monotonic() > deadline:
            return {"timeout": True, "instances": inst}
        time.sleep(0.2)


def zone(args: argparse.Namespace) -> dict:
    """A public hosted zone (for a launch that registers nodes in it)."""
    z = client(args, "route53").create_hosted_zone(Name=args.name, CallerReference=f"zone-{args.name}")
    return {"hosted_zone_id": z["HostedZone"]["Id"].split("/")[-1]}


def inventory(args: argparse.Namespace) -> dict:
    """Everything a launch can make, by name: what a teardown must leave as it found it."""
    c = {s: client(args, s) for s in ("autoscaling", "ec2", "iam", "lambda", "sns", "s3", "route53")}
    running = [i["InstanceId"] for r in c["ec2"].describe_instances()["Reservations"] for i in r["Instances"]
               if i["State"]["Name"] not in ("terminated", "shutting-down")]
    records = []
    for z in c["route53"].list_hosted_zones()["HostedZones"]:
        records += [f'{r["Type"]} {r["Name"]} {r.get("SetIdentifier", "")}'.strip()
                    for r in c["route53"].list_resource_record_sets(HostedZoneId=z["Id"])["ResourceRecordSets"]]
    return {
        "groups": sorted(g["AutoScalingGroupName"] for g in c["autoscaling"].describe_auto_scaling_groups()["AutoScalingGroups"]),
        "launch_templates": sorted(t["LaunchTemplateName"] for t in c["ec2"].describe_launch_templates()["LaunchTemplates"]),
        "security_groups": sorted(g["GroupName"] for g in c["ec2"].describe_security_groups()["SecurityGroups"]),
        "addresses": sorted(a["PublicIp"] for a in c["ec2"].describe_addresses()["Addresses"]),
        "running_instances": len(running),
        "roles": sorted(r["RoleName"] for r in c["iam"].list_roles()["Roles"]),
        "instance_profiles": sorted(p["InstanceProfileName"] for p in c["iam"].list_instance_profiles()["InstanceProfiles"]),
        "functions": sorted(f["FunctionName"] for f in c["lambda"].list_functions()["Functions"]),
        "topics": sorted(t["TopicArn"] for t in c["sns"].list_topics()["Topics"]),
        "buckets": sorted(b["Name"] for b in c["s3"].list_buckets()["Buckets"]),
        "records": sorted(records),
        "health_checks": len(c["route53"].list_health_checks(MaxItems="1000")["HealthChecks"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("world")
    w.add_argument("--bootstrap", help="Lambda bootstrap to subscribe to the lifecycle topic")
    w.add_argument("--group", default="mylb-asg")
    w.add_argument("--domain", default="lb.example.com")
    w.add_argument("--zone", default="example.com.")
    w.add_argument("--private-zone", choices=["first", "last"],
                   help="also a private zone of the same name, created before or after the public one")
    w.add_argument("--metadata")
    w.add_argument("--heartbeat", type=int, default=60, help="the terminating hook's heartbeat timeout")
    # A node's boot takes minutes on AWS (the role's default is 900 s); the
    # stand-in completes within seconds of `running`.
    w.add_argument("--launch-heartbeat", type=int, default=60, help="the launching hook's heartbeat timeout")
    w.add_argument("--no-public-ip", action="store_true")
    w.add_argument("--no-hooks", action="store_true", help="no lifecycle hooks: instances go InService at once")
    w.add_argument("--subnet-cidr", help="launch into a new VPC/subnet with this CIDR (e.g. 127.77.0.0/24)")
    w.add_argument("--stand-in", default="CONTINUE", choices=["CONTINUE", "ABANDON", "none"],
                   help="how the emulator completes launches in place of a node (none: a real node will)")
    s = sub.add_parser("scale")
    s.add_argument("--group", default="mylb-asg")
    s.add_argument("--desired", type=int, required=True)
    wt = sub.add_parser("wait")
    wt.add_argument("--group", default="mylb-asg")
    wt.add_argument("--in-service", type=int, required=True)
    wt.add_argument("--timeout", type=float, default=60)
    st = sub.add_parser("state")
    st.add_argument("--group", default="mylb-asg")
    hk = sub.add_parser("hook")
    hk.add_argument("--group", default="mylb-asg")
    hk.add_argument("--name", required=True)
    hk.add_argument("--transition", required=True)
    hk.add_argument("--metadata", required=True)
    p = sub.add_parser("publish")
    p.add_argument("--group", default="mylb-asg")
    p.add_argument("--message", required=True)
    p.add_argument("--topic-arn", help="another topic than the group's lifecycle topic")
    f = sub.add_parser("faults")
    f.add_argument("--rules", required=True)
    e = sub.add_parser("eips")
    e.add_argument("--pool", required=True)
    e.add_argument("--count", type=int, required=True)
    iv = sub.add_parser("invoke")
    iv.add_argument("--group", default="mylb-asg")
    iv.add_argument("--payload", required=True)
    tp = sub.add_parser("tamper")
    tp.add_argument("--group", default="mylb-asg")
    bd = sub.add_parser("bundle")
    how = bd.add_mutually_exclusive_group(required=True)
    how.add_argument("--tamper", action="store_true")
    how.add_argument("--put")
    bd.add_argument("--save", help="where --tamper keeps the original")
    ir = sub.add_parser("iam-role")
    ir.add_argument("--name", required=True)
    sub.add_parser("network")
    zn = sub.add_parser("zone")
    zn.add_argument("--name", required=True)
    sub.add_parser("inventory")
    asc = sub.add_parser("associate")
    asc.add_argument("--pool", required=True)
    dsc = sub.add_parser("disassociate")
    dsc.add_argument("--pool", required=True)
    cp = sub.add_parser("complete")
    cp.add_argument("--group", required=True)
    cp.add_argument("--hook", required=True)
    cp.add_argument("--instance", required=True)
    cp.add_argument("--result", default="CONTINUE")
    tm = sub.add_parser("terminate")
    tm.add_argument("--instance", required=True)
    args = ap.parse_args()
    commands = {"zone": zone, "inventory": inventory, "world": world, "hook": hook, "scale": scale, "wait": wait, "state": state, "publish": publish,
                "faults": faults, "eips": eips, "invoke": invoke, "tamper": tamper,
                "terminate": terminate, "iam-role": iam_role, "network": network,
                "complete": complete, "associate": associate,
                "disassociate": disassociate, "bundle": bundle}
    result = commands[args.cmd](args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
