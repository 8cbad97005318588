/*!
What every EC2 resource module shares: tags are written with CreateTags /
DeleteTags on the resource id whatever the resource, and read back as a
dict.
*/

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Tag;
use craftlb_core::error::{Error, sdk_error};
use craftlb_core::tags::TagPlan;

/// Tags as EC2 takes them.
pub fn tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Tags as EC2 returns them, as a dict.
pub fn tag_dict(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// Applies a tag plan to one resource: one CreateTags for what is set,
/// one DeleteTags for what goes.
pub async fn tag(client: &Client, id: &str, plan: &TagPlan) -> Result<(), Error> {
    if !plan.set.is_empty() {
        client
            .create_tags()
            .resources(id)
            .set_tags(Some(tags(&plan.set)))
            .send()
            .await
            .map_err(sdk_error("EC2", "CreateTags", format!("tag {id}")))?;
    }
    if !plan.unset.is_empty() {
        let keys = plan
            .unset
            .iter()
            .map(|k| Tag::builder().key(k).build())
            .collect();
        client
            .delete_tags()
            .resources(id)
            .set_tags(Some(keys))
            .send()
            .await
            .map_err(sdk_error("EC2", "DeleteTags", format!("untag {id}")))?;
    }
    Ok(())
}
