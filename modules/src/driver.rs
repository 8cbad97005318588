/*!
The one driver every AWS resource module runs on.

A module supplies how to read its resource, a pure plan from (task,
current) to changes, how to apply them and delete, and how AWS describes
the resource. The driver owns the rest, the same way for every module:
`state` present/absent; the check-mode gate — in check mode no write method
is called at all, so no write call can slip through; the resource as AWS
describes it after a write (the module's apply returns it: the write's
answer or a read by id); `diff` before/after; and the returned key.
*/

use serde_json::{Map, Value};

use crate::protocol::{Failure, Response};

/// What a module's plan says to do; empty means nothing to change.
pub trait Changes {
    fn is_empty(&self) -> bool;
}

impl<T> Changes for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

/// What the driver did, for modules that report it (amazon.aws's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One kind of AWS resource, as a module manages it.
#[allow(async_fn_in_trait)]
pub trait Resource {
    /// The validated, typed task.
    type Task;
    /// The AWS calls the module makes (a trait, so tests use a fake).
    type Api;
    /// The resource as read from AWS.
    type Current;
    type Changes: Changes;

    /// The key the resource is returned under (`health_check`, `iam_role`…);
    /// empty: its keys are returned at the top level, as some amazon.aws
    /// modules do (`lambda`: `configuration`, `code`).
    const KEY: &'static str;

    /// Whether the task wants the resource to exist.
    fn present(task: &Self::Task) -> bool;

    /// The resource the task is about; `None` when it does not exist.
    async fn read(api: &Self::Api, task: &Self::Task) -> Result<Option<Self::Current>, Failure>;

    /// The pure decision: what must change to get from `current` to the task.
    /// A task that cannot be done (an immutable setting differs, an id that
    /// does not exist) fails here, before any write.
    fn plan(task: &Self::Task, current: Option<&Self::Current>) -> Result<Self::Changes, Failure>;

    /// Makes the changes; returns the resource as AWS describes it after.
    async fn apply(
        api: &Self::Api,
        task: &Self::Task,
        current: Option<&Self::Current>,
        changes: &Self::Changes,
    ) -> Result<Self::Current, Failure>;

    /// Deletes the resource; `false` when it was already gone.
    async fn delete(
        api: &Self::Api,
        task: &Self::Task,
        current: &Self::Current,
    ) -> Result<bool, Failure>;

    /// The resource as AWS describes it (amazon.aws snake_case keys).
    fn describe(current: &Self::Current) -> Value;

    /// What the resource would look like after `changes` (check mode and
    /// diff). Not a call to AWS: computed from the plan.
    fn preview(
        task: &Self::Task,
        current: Option<&Self::Current>,
        changes: &Self::Changes,
    ) -> Value;

    /// The partition and account a resource still to be created would live
    /// in, for the ARN its check-mode preview shows (later tasks of a
    /// `--check` run build on it). Called only in check mode when the plan
    /// creates, so a run with nothing to create makes no extra call.
    async fn account(_api: &Self::Api) -> Result<Option<(String, String)>, Failure> {
        Ok(None)
    }

    /// The preview of a resource still to be created, given `account`.
    fn preview_create(
        task: &Self::Task,
        changes: &Self::Changes,
        _account: Option<&(String, String)>,
    ) -> Value {
        Self::preview(task, None, changes)
    }

    /// What the task cannot do and the user should hear about (returned
    /// as Ansible warnings).
    fn warnings(_task: &Self::Task, _current: Option<&Self::Current>) -> Vec<String> {
        Vec::new()
    }

    /// The returned value, given what was done; the default is the
    /// description as is (`{}` after a delete).
    fn result(described: Value, _action: Option<Action>) -> Value {
        described
    }
}

fn empty() -> Value {
    Value::Object(Map::new())
}

/// Runs one task: read, plan, and — unless in check mode — apply or delete.
pub async fn drive<R: Resource>(
    api: &R::Api,
    task: &R::Task,
    check_mode: bool,
) -> Result<Response, Failure> {
    let current = R::read(api, task).await?;
    let before = current.as_ref().map_or_else(empty, R::describe);
    let warnings = if R::present(task) {
        R::warnings(task, current.as_ref())
    } else {
        Vec::new()
    };
    let (changed, action, after) = if !R::present(task) {
        match &current {
            None => (false, None, empty()),
            Some(c) => {
                let gone = check_mode || R::delete(api, task, c).await?;
                (gone, gone.then_some(Action::Delete), empty())
            }
        }
    } else {
        let changes = R::plan(task, current.as_ref())?;
        let action = match (&current, changes.is_empty()) {
            (_, true) => None,
            (None, false) => Some(Action::Create),
            (Some(_), false) => Some(Action::Update),
        };
        let after = match (action, check_mode) {
            (None, _) => before.clone(),
            (Some(Action::Create), true) => {
                R::preview_create(task, &changes, R::account(api).await?.as_ref())
            }
            (Some(_), true) => R::preview(task, current.as_ref(), &changes),
            (Some(_), false) => {
                R::describe(&R::apply(api, task, current.as_ref(), &changes).await?)
            }
        };
        (action.is_some(), action, after)
    };
    let mut data = Map::new();
    let described = if action == Some(Action::Delete) {
        before.clone()
    } else {
        after.clone()
    };
    match (R::KEY, R::result(described, action)) {
        ("", Value::Object(top)) => data.extend(top),
        (key, value) => {
            data.insert(key.into(), value);
        }
    }
    Ok(Response {
        changed,
        data,
        diff: Some((before, after)),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;

    /// A resource that is one integer; the fake API records every write.
    struct Counter;

    #[derive(Default)]
    struct Api {
        value: RefCell<Option<i64>>,
        writes: RefCell<Vec<String>>,
        account_reads: RefCell<usize>,
    }

    struct Task {
        present: bool,
        want: Option<i64>,
    }

    impl Resource for Counter {
        type Task = Task;
        type Api = Api;
        type Current = i64;
        type Changes = Vec<i64>;
        const KEY: &'static str = "counter";

        fn present(task: &Task) -> bool {
            task.present
        }
        async fn read(api: &Api, _: &Task) -> Result<Option<i64>, Failure> {
            Ok(*api.value.borrow())
        }
        fn plan(task: &Task, current: Option<&i64>) -> Result<Vec<i64>, Failure> {
            Ok(match (task.want, current) {
                // Omitted leaves the resource alone.
                (None, Some(_)) => vec![],
                (None, None) => vec![0],
                (Some(w), Some(c)) if w == *c => vec![],
                (Some(w), _) => vec![w],
            })
        }
        async fn apply(
            api: &Api,
            _: &Task,
            _: Option<&i64>,
            ch: &Vec<i64>,
        ) -> Result<i64, Failure> {
            api.writes.borrow_mut().push(format!("set {}", ch[0]));
            *api.value.borrow_mut() = Some(ch[0]);
            Ok(ch[0])
        }
        async fn delete(api: &Api, _: &Task, _: &i64) -> Result<bool, Failure> {
            api.writes.borrow_mut().push("delete".into());
            Ok(api.value.borrow_mut().take().is_some())
        }
        fn describe(c: &i64) -> Value {
            json!({"value": c})
        }
        fn preview(_: &Task, _: Option<&i64>, ch: &Vec<i64>) -> Value {
            json!({"value": ch[0]})
        }
        async fn account(api: &Api) -> Result<Option<(String, String)>, Failure> {
            *api.account_reads.borrow_mut() += 1;
            Ok(Some(("aws".into(), "123456789012".into())))
        }
        fn preview_create(_: &Task, ch: &Vec<i64>, account: Option<&(String, String)>) -> Value {
            json!({"value": ch[0], "account": account.map(|a| a.1.clone())})
        }
        fn result(described: Value, action: Option<Action>) -> Value {
            let mut v = described;
            if let (Some(a), Some(o)) = (action, v.as_object_mut()) {
                o.insert("action".into(), Value::from(a.as_str()));
            }
            v
        }
    }

    fn run(api: &Api, present: bool, want: Option<i64>, check: bool) -> Response {
        let task = Task { present, want };
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(drive::<Counter>(api, &task, check))
            .unwrap_or_else(|f| panic!("{}", f.msg))
    }

    #[test]
    fn check_real_check_real_then_absent_twice() {
        let api = Api::default();
        let r = run(&api, true, Some(3), true);
        assert!(r.changed);
        assert_eq!(
            r.data["counter"],
            json!({"value": 3, "account": "123456789012", "action": "create"})
        );
        assert_eq!(
            r.diff,
            Some((json!({}), json!({"value": 3, "account": "123456789012"})))
        );
        assert!(api.writes.borrow().is_empty(), "check mode wrote");
        assert_eq!(*api.account_reads.borrow(), 1);

        let r = run(&api, true, Some(3), false);
        assert!(r.changed);
        assert_eq!(api.writes.borrow().as_slice(), ["set 3"]);
        for check in [true, false] {
            let r = run(&api, true, Some(3), check);
            assert!(!r.changed, "check={check}");
            assert_eq!(r.data["counter"], json!({"value": 3}));
        }
        // Omitting the setting changes nothing.
        assert!(!run(&api, true, None, false).changed);
        // An update, check mode first.
        let r = run(&api, true, Some(5), true);
        assert_eq!(r.data["counter"]["action"], "update");
        assert_eq!(api.writes.borrow().len(), 1);
        run(&api, true, Some(5), false);
        assert_eq!(api.writes.borrow().len(), 2);

        let r = run(&api, false, None, true);
        assert!(r.changed);
        assert_eq!(r.data["counter"], json!({"value": 5, "action": "delete"}));
        assert_eq!(api.writes.borrow().len(), 2, "check-mode delete wrote");
        let r = run(&api, false, None, false);
        assert!(r.changed && r.diff == Some((json!({"value": 5}), json!({}))));
        let r = run(&api, false, None, false);
        assert!(!r.changed);
        assert_eq!(r.data["counter"], json!({}));
        assert_eq!(api.writes.borrow().as_slice(), ["set 3", "set 5", "delete"]);
        // The account is read for a check-mode create only.
        assert_eq!(*api.account_reads.borrow(), 1);
    }
}
