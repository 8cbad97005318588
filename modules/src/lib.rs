/*!
craftlb-modules: Ansible modules as small static binaries.

[`protocol`] is the Ansible side (arguments, check mode, diff, no_log, one
JSON object out); [`aws`] the connection parameters every AWS module shares;
each other module file holds one module's spec, its validation and its run
function. The binaries in `src/bin/` are one call each.
*/

pub mod asg_lifecycle_hook;
pub mod autoscaling_group;
pub mod aws;
pub mod aws_caller_info;
pub mod deploy_bundle;
pub mod doc;
pub mod driver;
pub mod ec2;
pub mod ec2_ami_info;
pub mod ec2_eip_pool;
pub mod ec2_launch_template;
pub mod ec2_security_group;
pub mod ec2_vpc_subnet_info;
pub mod haproxy;
pub mod iam_role;
pub mod lambda_function;
pub mod protocol;
pub mod route53_healthcheck;
pub mod s3_bucket;
pub mod s3_object;
pub mod sns_topic;
pub mod udp_balancer;
pub mod update_peers;

/// Every module this crate builds.
pub static MODULES: &[&protocol::Module] = &[
    &asg_lifecycle_hook::MODULE,
    &autoscaling_group::MODULE,
    &aws_caller_info::MODULE,
    &deploy_bundle::MODULE,
    &ec2_ami_info::MODULE,
    &ec2_eip_pool::MODULE,
    &ec2_launch_template::MODULE,
    &ec2_security_group::MODULE,
    &ec2_vpc_subnet_info::MODULE,
    &iam_role::MODULE,
    &lambda_function::MODULE,
    &route53_healthcheck::MODULE,
    &s3_bucket::MODULE,
    &s3_object::MODULE,
    &sns_topic::MODULE,
    &udp_balancer::MODULE,
    &update_peers::MODULE,
];
