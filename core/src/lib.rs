/*!
craftlb-core: what the Ansible modules and the Lambda share.

- [`aws`]: client configuration (region, profile, keys, endpoint), retry and
  timeout policy — decided here only.
- [`autoscaling`]: the Auto Scaling calls the Lambda and the nodes share.
- [`consistency`]: AWS's "not yet" answers, retried until a deadline.
- [`error`]: the error type, carrying operation, AWS code and request id.
- [`paginate`]: marker-following pagination with loop protection.
- [`healthcheck`]: Route 53 health checks — model, pure plan, API calls.
- [`lifecycle`]: lifecycle hooks → Route 53 decisions (pure).
- [`peers`]: a node's stick-table peers from its Auto Scaling group.
- [`tags`]: tag plans, the same for every resource.
- [`policy`]: IAM-style policy documents compared by meaning.
*/

pub mod autoscaling;
pub mod aws;
pub mod consistency;
pub mod error;
pub mod healthcheck;
pub mod lifecycle;
pub mod paginate;
pub mod peers;
pub mod policy;
pub mod tags;

pub use error::{Error, ErrorKind, Result};
