/*!
Tags, planned once for every resource: what to set and what to remove, the
way amazon.aws's `compare_aws_tags` does it. Unmanaged (`tags` not given)
never touches tags; `purge` removes keys that are not asked for, except
keys under `aws:` (AWS owns those and refuses to remove them).
*/

use std::collections::BTreeMap;

/// Tag changes: keys to set (with values) and keys to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagPlan {
    pub set: BTreeMap<String, String>,
    pub unset: Vec<String>,
}

impl TagPlan {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty()
    }
    /// The tags after the plan is applied to `current`.
    pub fn apply(&self, current: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut out = current.clone();
        for k in &self.unset {
            out.remove(k);
        }
        out.extend(self.set.clone());
        out
    }
}

/// Set what differs; when purging, remove what is not wanted.
pub fn plan_tags(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
    purge: bool,
) -> TagPlan {
    let set = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let unset = if purge {
        current
            .keys()
            .filter(|k| !desired.contains_key(*k) && !k.starts_with("aws:"))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    TagPlan { set, unset }
}

/// The plan for a task's `tags`/`purge_tags`: `None` tags leave the
/// resource's tags alone.
pub fn plan_task_tags(
    current: &BTreeMap<String, String>,
    desired: Option<&BTreeMap<String, String>>,
    purge: bool,
) -> TagPlan {
    match desired {
        Some(d) => plan_tags(current, d, purge),
        None => TagPlan::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tag_plans() {
        let cur = map(&[
            ("Name", "a"),
            ("env", "prod"),
            ("old", "x"),
            ("aws:cloudformation:stack-name", "s"),
        ]);
        let want = map(&[("Name", "a"), ("env", "dev")]);
        let p = plan_tags(&cur, &want, true);
        assert_eq!(p.set, map(&[("env", "dev")]));
        assert_eq!(
            p.unset,
            vec!["old".to_owned()],
            "aws: keys are never purged"
        );
        assert_eq!(
            p.apply(&cur),
            map(&[
                ("Name", "a"),
                ("env", "dev"),
                ("aws:cloudformation:stack-name", "s")
            ])
        );
        let p = plan_tags(&cur, &want, false);
        assert!(p.unset.is_empty());
        assert!(plan_tags(&want, &want, true).is_empty());
        assert!(plan_task_tags(&cur, None, true).is_empty(), "unmanaged");
        assert_eq!(
            plan_task_tags(&cur, Some(&BTreeMap::new()), true)
                .unset
                .len(),
            3
        );
    }
}
