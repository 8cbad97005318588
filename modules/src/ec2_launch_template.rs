/*!
`ec2_launch_template`: one EC2 launch template, with the parameters and
return keys of `amazon.aws.ec2_launch_template` for what a load balancer
node needs.

The task describes the whole launch data of a version, and it is compared,
normalised, with the template's *default* version: user data as text (not
base64, which the task never has to produce), security groups as a set,
an instance profile by name or ARN as given. Only when they differ is a new
version written — whole, never "based on" another (versions do not inherit:
community.aws#685) — and the default moved to it explicitly, so what an Auto
Scaling group launches with `$Default` is what the last run asked for.
IMDSv2 is always required (`http_tokens: required`); a default version
without it is a difference.
*/

use std::collections::BTreeMap;
use std::marker::PhantomData;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplate, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateHttpTokensState,
    LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateInstanceNetworkInterfaceSpecificationRequest, RequestLaunchTemplateData,
    ResourceType, ResponseLaunchTemplateData, TagSpecification, VolumeType,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use craftlb_core::error::{Error, ErrorKind, sdk_error};
use craftlb_core::tags::{TagPlan, plan_task_tags};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::aws::{AWS, Connection, PURGE_TAGS, TAGS, tag_map};
use crate::driver::{Resource, drive};
use crate::protocol::{Ctx, Default, Failure, Module, Param, Params, Response, RunFuture, Spec};

pub const NAME: &str = "ec2_launch_template";

pub static MODULE: Module = Module {
    name: NAME,
    spec: &SPEC,
    doc: include_str!("../docs/ec2_launch_template.yml"),
    run: |ctx| -> RunFuture { Box::pin(run(ctx)) },
};

/// User data AWS takes, before base64.
pub const USER_DATA_MAX: usize = 16 * 1024;

static EBS: Spec = Spec {
    params: &[
        Param::int("volume_size").doc(&["Size in GiB."]),
        Param::str("volume_type")
            .choices(&["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"])
            .doc(&["The volume type."]),
        Param::bool("delete_on_termination").doc(&["Delete the volume with the instance."]),
        Param::bool("encrypted").doc(&["Encrypt the volume (the account's default key)."]),
    ],
    ..Spec::EMPTY
};

static BLOCK_DEVICE: Spec = Spec {
    params: &[
        Param::str("device_name")
            .required()
            .doc(&["The device, e.g. C(/dev/xvda), the root device of Amazon Linux 2023."]),
        Param::dict_of("ebs", &EBS).doc(&["The EBS volume."]),
    ],
    ..Spec::EMPTY
};

pub static SPEC: Spec = Spec {
    params: &[
        Param::str("name")
            .aliases(&["template_name"])
            .required()
            .doc(&["The template's name."]),
        Param::str("state")
            .choices(&["present", "absent"])
            .default(Default::Str("present"))
            .doc(&["Whether the template should exist. C(absent) deletes it with every version."]),
        Param::str("image_id").doc(&["The AMI the instances boot."]),
        Param::str("instance_type").doc(&["The instance type, e.g. C(t3.nano), C(c7g.large)."]),
        Param::str("key_name").doc(&["An EC2 key pair for SSH."]),
        Param::str("user_data").doc(&[
            "User data as plain text (a script, cloud-config); the module encodes it. At most 16 KiB. \
             Compared as text with the default version's.",
        ]),
        Param::str("iam_instance_profile").doc(&["The instance profile, by name or ARN."]),
        Param::list("security_group_ids", crate::protocol::Type::Str)
            .doc(&["Security group ids, compared as a set."]),
        Param::bool("associate_public_ip_address").doc(&[
            "Give the instance a public IPv4 address whatever its subnet says. The module then writes the \
             security groups on the primary network interface, as AWS requires.",
        ]),
        Param::int("http_put_response_hop_limit").doc(&[
            "IMDS hop limit (1-64). IMDSv2 is always required (C(http_tokens=required)).",
        ]),
        Param::list_of("block_device_mappings", &BLOCK_DEVICE).doc(&["Block devices."]),
        Param::str("version_description")
            .doc(&["The description of a version this run writes (not compared)."]),
        TAGS,
        PURGE_TAGS,
    ],
    includes: &[&AWS],
    ..Spec::EMPTY
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ebs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    pub device_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ebs: Option<Ebs>,
}

/// A version's launch data, normalised for comparison and returned as is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Data {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// Decoded text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iam_instance_profile: Option<String>,
    /// Sorted.
    pub security_group_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub associate_public_ip_address: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_tokens: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_put_response_hop_limit: Option<i32>,
    pub block_device_mappings: Vec<BlockDevice>,
}

#[derive(Debug, Deserialize)]
struct Args {
    name: String,
    state: String,
    image_id: Option<String>,
    instance_type: Option<String>,
    key_name: Option<String>,
    user_data: Option<String>,
    iam_instance_profile: Option<String>,
    security_group_ids: Option<Vec<String>>,
    associate_public_ip_address: Option<bool>,
    http_put_response_hop_limit: Option<i64>,
    block_device_mappings: Option<Vec<BlockDevice>>,
    version_description: Option<String>,
    tags: Option<Map<String, Value>>,
    purge_tags: bool,
    #[serde(flatten)]
    connection: Connection,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub present: bool,
    pub name: String,
    pub data: Data,
    pub version_description: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub purge_tags: bool,
}

pub fn task(p: &Params) -> Result<Task, Failure> {
    let a: Args = p.typed()?;
    if let Some(u) = a.user_data.as_ref().filter(|u| u.len() > USER_DATA_MAX) {
        return Err(Failure::msg(format!(
            "user_data is {} bytes; AWS takes at most {USER_DATA_MAX} before base64",
            u.len()
        )));
    }
    let hop = a
        .http_put_response_hop_limit
        .map(|h| {
            i32::try_from(h)
                .ok()
                .filter(|h| (1..=64).contains(h))
                .ok_or_else(|| {
                    Failure::msg(format!("http_put_response_hop_limit must be 1-64, got {h}"))
                })
        })
        .transpose()?;
    let mut sgs = a.security_group_ids.unwrap_or_default();
    sgs.sort();
    sgs.dedup();
    if let Some(bad) = sgs.iter().find(|s| !s.starts_with("sg-")) {
        return Err(Failure::msg(format!(
            "security_group_ids: '{bad}' is not a security group id (sg-…)"
        )));
    }
    if let Some(t) = a
        .instance_type
        .as_deref()
        .filter(|t| !InstanceType::values().contains(t))
    {
        return Err(Failure::msg(format!(
            "instance_type '{t}' is not an EC2 instance type"
        )));
    }
    let mut devices = a.block_device_mappings.unwrap_or_default();
    devices.sort_by(|x, y| x.device_name.cmp(&y.device_name));
    Ok(Task {
        present: a.state != "absent",
        name: a.name,
        data: Data {
            image_id: a.image_id,
            instance_type: a.instance_type,
            key_name: a.key_name,
            user_data: a.user_data,
            iam_instance_profile: a.iam_instance_profile,
            security_group_ids: sgs,
            associate_public_ip_address: a.associate_public_ip_address,
            http_tokens: Some("required".into()),
            http_put_response_hop_limit: hop,
            block_device_mappings: devices,
        },
        version_description: a.version_description,
        tags: a.tags.as_ref().map(tag_map),
        purge_tags: a.purge_tags,
    })
}

/// The template as read, with its default version's data.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub id: String,
    pub name: String,
    pub default_version: i64,
    pub latest_version: i64,
    pub tags: BTreeMap<String, String>,
    pub data: Data,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub create: bool,
    pub new_version: bool,
    pub tags: TagPlan,
}

impl crate::driver::Changes for Changes {
    fn is_empty(&self) -> bool {
        !self.create && !self.new_version && self.tags.is_empty()
    }
}

pub fn plan(t: &Task, current: Option<&Current>) -> Changes {
    match current {
        None => Changes {
            create: true,
            new_version: false,
            tags: plan_task_tags(&BTreeMap::new(), t.tags.as_ref(), t.purge_tags),
        },
        Some(c) => Changes {
            create: false,
            new_version: c.data != t.data,
            tags: plan_task_tags(&c.tags, t.tags.as_ref(), t.purge_tags),
        },
    }
}

/// User data as text: AWS returns the base64 it was given.
fn user_data_text(raw: &str) -> String {
    STANDARD
        .decode(raw.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| raw.to_owned())
}

pub fn data_from(d: &ResponseLaunchTemplateData) -> Data {
    let nic = d.network_interfaces().first();
    let mut sgs: Vec<String> = match nic {
        Some(n) if !n.groups().is_empty() => n.groups().to_vec(),
        _ => d.security_group_ids().to_vec(),
    };
    sgs.sort();
    let mut devices: Vec<BlockDevice> = d
        .block_device_mappings()
        .iter()
        .map(|b| BlockDevice {
            device_name: b.device_name().unwrap_or_default().to_owned(),
            ebs: b.ebs().map(|e| Ebs {
                volume_size: e.volume_size(),
                volume_type: e.volume_type().map(|v| v.as_str().to_owned()),
                delete_on_termination: e.delete_on_termination(),
                encrypted: e.encrypted(),
            }),
        })
        .collect();
    devices.sort_by(|x, y| x.device_name.cmp(&y.device_name));
    let meta = d.metadata_options();
    Data {
        image_id: d.image_id().map(str::to_owned),
        instance_type: d.instance_type().map(|t| t.as_str().to_owned()),
        key_name: d.key_name().map(str::to_owned),
        user_data: d.user_data().map(user_data_text),
        iam_instance_profile: d
            .iam_instance_profile()
            .and_then(|p| p.arn().or(p.name()))
            .map(str::to_owned),
        security_group_ids: sgs,
        associate_public_ip_address: nic.and_then(|n| n.associate_public_ip_address()),
        http_tokens: meta
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str().to_owned()),
        http_put_response_hop_limit: meta.and_then(|m| m.http_put_response_hop_limit()),
        block_device_mappings: devices,
    }
}

pub fn request_data(d: &Data) -> RequestLaunchTemplateData {
    let mut r = RequestLaunchTemplateData::builder()
        .set_image_id(d.image_id.clone())
        .set_instance_type(d.instance_type.as_deref().map(InstanceType::from))
        .set_key_name(d.key_name.clone())
        .set_user_data(d.user_data.as_ref().map(|u| STANDARD.encode(u)))
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                .set_http_put_response_hop_limit(d.http_put_response_hop_limit)
                .build(),
        );
    if let Some(p) = &d.iam_instance_profile {
        let spec = LaunchTemplateIamInstanceProfileSpecificationRequest::builder();
        r = r.iam_instance_profile(if p.starts_with("arn:") {
            spec.arn(p).build()
        } else {
            spec.name(p).build()
        });
    }
    match d.associate_public_ip_address {
        // AWS refuses SecurityGroupIds next to network interfaces.
        Some(public) => {
            r = r.network_interfaces(
                LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                    .device_index(0)
                    .associate_public_ip_address(public)
                    .delete_on_termination(true)
                    .set_groups(Some(d.security_group_ids.clone()))
                    .build(),
            );
        }
        None => r = r.set_security_group_ids(Some(d.security_group_ids.clone())),
    }
    for b in &d.block_device_mappings {
        let ebs = b.ebs.as_ref().map(|e| {
            LaunchTemplateEbsBlockDeviceRequest::builder()
                .set_volume_size(e.volume_size)
                .set_volume_type(e.volume_type.as_deref().map(VolumeType::from))
                .set_delete_on_termination(e.delete_on_termination)
                .set_encrypted(e.encrypted)
                .build()
        });
        r = r.block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(&b.device_name)
                .set_ebs(ebs)
                .build(),
        );
    }
    r.build()
}

/// The EC2 calls this module makes.
#[allow(async_fn_in_trait)]
pub trait Api {
    async fn template(&self, name: &str) -> Result<Option<LaunchTemplate>, Error>;
    async fn default_data(&self, id: &str) -> Result<Option<ResponseLaunchTemplateData>, Error>;
    async fn create(
        &self,
        name: &str,
        data: RequestLaunchTemplateData,
        description: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Error>;
    /// Writes a version; returns its number.
    async fn create_version(
        &self,
        id: &str,
        data: RequestLaunchTemplateData,
        description: Option<&str>,
    ) -> Result<i64, Error>;
    async fn set_default(&self, id: &str, version: i64) -> Result<(), Error>;
    async fn tag(&self, id: &str, plan: &TagPlan) -> Result<(), Error>;
    async fn delete(&self, id: &str) -> Result<(), Error>;
}

impl Api for Client {
    async fn template(&self, name: &str) -> Result<Option<LaunchTemplate>, Error> {
        match self
            .describe_launch_templates()
            .launch_template_names(name)
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "DescribeLaunchTemplates",
                format!("read launch template '{name}'"),
            )) {
            Ok(out) => Ok(out
                .launch_templates()
                .iter()
                .find(|t| t.launch_template_name() == Some(name))
                .cloned()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn default_data(&self, id: &str) -> Result<Option<ResponseLaunchTemplateData>, Error> {
        let out = self
            .describe_launch_template_versions()
            .launch_template_id(id)
            .versions("$Default")
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "DescribeLaunchTemplateVersions",
                format!("read the default version of launch template {id}"),
            ))?;
        Ok(out
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data())
            .cloned())
    }
    async fn create(
        &self,
        name: &str,
        data: RequestLaunchTemplateData,
        description: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let mut req = self
            .create_launch_template()
            .launch_template_name(name)
            .launch_template_data(data)
            .set_version_description(description.map(str::to_owned));
        if !tags.is_empty() {
            req = req.tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::LaunchTemplate)
                    .set_tags(Some(crate::ec2::tags(tags)))
                    .build(),
            );
        }
        req.send().await.map_err(sdk_error(
            "EC2",
            "CreateLaunchTemplate",
            format!("create launch template '{name}'"),
        ))?;
        Ok(())
    }
    async fn create_version(
        &self,
        id: &str,
        data: RequestLaunchTemplateData,
        description: Option<&str>,
    ) -> Result<i64, Error> {
        let out = self
            .create_launch_template_version()
            .launch_template_id(id)
            .launch_template_data(data)
            .set_version_description(description.map(str::to_owned))
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "CreateLaunchTemplateVersion",
                format!("write a version of launch template {id}"),
            ))?;
        out.launch_template_version()
            .and_then(|v| v.version_number())
            .ok_or_else(|| {
                Error::config(format!(
                    "CreateLaunchTemplateVersion of {id} returned no version number"
                ))
            })
    }
    async fn set_default(&self, id: &str, version: i64) -> Result<(), Error> {
        self.modify_launch_template()
            .launch_template_id(id)
            .default_version(version.to_string())
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "ModifyLaunchTemplate",
                format!("make version {version} the default of launch template {id}"),
            ))?;
        Ok(())
    }
    async fn tag(&self, id: &str, plan: &TagPlan) -> Result<(), Error> {
        crate::ec2::tag(self, id, plan).await
    }
    async fn delete(&self, id: &str) -> Result<(), Error> {
        self.delete_launch_template()
            .launch_template_id(id)
            .send()
            .await
            .map_err(sdk_error(
                "EC2",
                "DeleteLaunchTemplate",
                format!("delete launch template {id}"),
            ))?;
        Ok(())
    }
}

fn describe(c: &Current) -> Value {
    json!({
        "template": {
            "launch_template_id": c.id,
            "launch_template_name": c.name,
            "default_version_number": c.default_version,
            "latest_version_number": c.latest_version,
            "tags": c.tags,
        },
        "default_version": {
            "version_number": c.default_version,
            "launch_template_data": c.data,
        },
    })
}

async fn read<A: Api>(api: &A, name: &str) -> Result<Option<Current>, Failure> {
    let Some(t) = api.template(name).await? else {
        return Ok(None);
    };
    let id = t.launch_template_id().unwrap_or_default().to_owned();
    let data = api
        .default_data(&id)
        .await?
        .map(|d| data_from(&d))
        .unwrap_or_default();
    Ok(Some(Current {
        name: name.to_owned(),
        default_version: t.default_version_number().unwrap_or(1),
        latest_version: t.latest_version_number().unwrap_or(1),
        tags: crate::ec2::tag_dict(t.tags()),
        data,
        id,
    }))
}

pub struct LaunchTemplateResource<A>(PhantomData<A>);

impl<A: Api> Resource for LaunchTemplateResource<A> {
    type Task = Task;
    type Api = A;
    type Current = Current;
    type Changes = Changes;
    const KEY: &'static str = "";

    fn present(t: &Task) -> bool {
        t.present
    }

    async fn read(api: &A, t: &Task) -> Result<Option<Current>, Failure> {
        read(api, &t.name).await
    }

    fn plan(t: &Task, current: Option<&Current>) -> Result<Changes, Failure> {
        Ok(plan(t, current))
    }

    async fn apply(
        api: &A,
        t: &Task,
        current: Option<&Current>,
        ch: &Changes,
    ) -> Result<Current, Failure> {
        let desc = t.version_description.as_deref();
        match current {
            None => {
                api.create(&t.name, request_data(&t.data), desc, &ch.tags.set)
                    .await?;
            }
            Some(c) => {
                if ch.new_version {
                    let v = api
                        .create_version(&c.id, request_data(&t.data), desc)
                        .await?;
                    api.set_default(&c.id, v).await?;
                }
                if !ch.tags.is_empty() {
                    api.tag(&c.id, &ch.tags).await?;
                }
            }
        }
        read(api, &t.name).await?.ok_or_else(|| {
            Failure::msg(format!(
                "launch template '{}' was written but cannot be read back",
                t.name
            ))
        })
    }

    async fn delete(api: &A, _t: &Task, c: &Current) -> Result<bool, Failure> {
        api.delete(&c.id).await?;
        Ok(true)
    }

    fn describe(c: &Current) -> Value {
        describe(c)
    }

    fn preview(t: &Task, current: Option<&Current>, ch: &Changes) -> Value {
        let next = current.map_or(1, |c| c.latest_version + 1);
        let (id, default, latest) = match current {
            Some(c) if ch.new_version => (c.id.clone(), next, next),
            Some(c) => (c.id.clone(), c.default_version, c.latest_version),
            None => (String::new(), 1, 1),
        };
        describe(&Current {
            id,
            name: t.name.clone(),
            default_version: default,
            latest_version: latest,
            tags: ch
                .tags
                .apply(&current.map(|c| c.tags.clone()).unwrap_or_default()),
            data: if current.is_none() || ch.new_version {
                t.data.clone()
            } else {
                current.map(|c| c.data.clone()).unwrap_or_default()
            },
        })
    }
}

pub async fn run(ctx: Ctx) -> Result<Response, Failure> {
    let t = task(&ctx.params)?;
    let a: Args = ctx.params.typed()?;
    let config = craftlb_core::aws::sdk_config(&a.connection.aws_params(), None).await?;
    let client = Client::new(&config);
    drive::<LaunchTemplateResource<Client>>(&client, &t, ctx.check_mode).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of(v: Value) -> Result<Task, String> {
        crate::protocol::task_of(&SPEC, v, task)
    }

    fn ok(v: Value) -> Task {
        task_of(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn lb() -> Value {
        json!({"name": "lt", "image_id": "ami-1", "instance_type": "t3.nano",
               "user_data": "#!/bin/sh\necho hi\n", "iam_instance_profile": "mylb-node",
               "security_group_ids": ["sg-2", "sg-1"], "associate_public_ip_address": true,
               "block_device_mappings": [{"device_name": "/dev/xvda",
                                          "ebs": {"volume_size": 8, "volume_type": "gp3"}}]})
    }

    #[test]
    fn a_version_as_aws_returns_it_is_the_same_data() {
        let t = ok(lb());
        // What AWS answers for the version the module wrote: base64 user
        // data, the groups on the interface, IMDS options.
        let req = request_data(&t.data);
        let resp = ResponseLaunchTemplateData::builder()
            .set_image_id(req.image_id().map(str::to_owned))
            .set_instance_type(req.instance_type().cloned())
            .set_user_data(req.user_data().map(str::to_owned))
            .iam_instance_profile(
                aws_sdk_ec2::types::LaunchTemplateIamInstanceProfileSpecification::builder()
                    .name("mylb-node")
                    .build(),
            )
            .network_interfaces(
                aws_sdk_ec2::types::LaunchTemplateInstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .associate_public_ip_address(true)
                    .groups("sg-2")
                    .groups("sg-1")
                    .build(),
            )
            .metadata_options(
                aws_sdk_ec2::types::LaunchTemplateInstanceMetadataOptions::builder()
                    .http_tokens(LaunchTemplateHttpTokensState::Required)
                    .build(),
            )
            .block_device_mappings(
                aws_sdk_ec2::types::LaunchTemplateBlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        aws_sdk_ec2::types::LaunchTemplateEbsBlockDevice::builder()
                            .volume_size(8)
                            .volume_type(VolumeType::Gp3)
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert!(
            req.security_group_ids().is_empty(),
            "groups go on the interface"
        );
        let current = Current {
            id: "lt-1".into(),
            name: "lt".into(),
            default_version: 3,
            latest_version: 4,
            tags: BTreeMap::new(),
            data: data_from(&resp),
        };
        assert_eq!(
            current.data.user_data.as_deref(),
            Some("#!/bin/sh\necho hi\n")
        );
        assert_eq!(plan(&t, Some(&current)), Changes::default());
        // IMDSv1 allowed on the default version: a new version.
        let mut v1 = current.clone();
        v1.data.http_tokens = Some("optional".into());
        assert!(plan(&t, Some(&v1)).new_version);
        // A new instance type: a new version.
        let t2 = ok(json!({"name": "lt", "image_id": "ami-1", "instance_type": "t3.micro"}));
        assert!(plan(&t2, Some(&current)).new_version);
    }

    #[test]
    fn the_preview_of_a_new_version_is_the_next_number() {
        let t = ok(json!({"name": "lt", "instance_type": "t3.micro"}));
        let current = Current {
            id: "lt-1".into(),
            name: "lt".into(),
            default_version: 2,
            latest_version: 5,
            tags: BTreeMap::new(),
            data: Data::default(),
        };
        let ch = plan(&t, Some(&current));
        let v = LaunchTemplateResource::<Client>::preview(&t, Some(&current), &ch);
        assert_eq!(v["template"]["default_version_number"], 6);
        assert_eq!(
            v["default_version"]["launch_template_data"]["instance_type"],
            "t3.micro"
        );
    }

    #[test]
    fn bad_arguments_fail_before_any_call() {
        let e = |v| task_of(v).err().unwrap_or_default();
        assert!(e(json!({"name": "lt", "user_data": "x".repeat(16 * 1024 + 1)})).contains("16384"));
        assert!(e(json!({"name": "lt", "instance_type": "t3.huge"})).contains("t3.huge"));
        assert!(e(json!({"name": "lt", "security_group_ids": ["web"]})).contains("'web'"));
        assert!(e(json!({"name": "lt", "http_put_response_hop_limit": 0})).contains("1-64"));
        assert!(
            e(json!({"name": "lt", "block_device_mappings": [{"ebs": {"volume_size": 8}}]}))
                .contains("device_name")
        );
    }
}
