/*!
Marker-based pagination, once.

Route 53, IAM, Auto Scaling and EC2 list calls all return a page plus an
opaque "next" token. [`for_each_page`] follows the tokens to the end (or
until the visitor has what it wants) and refuses a token it has already seen
— a server that hands back the same marker would otherwise loop forever.
*/

use std::collections::HashSet;
use std::future::Future;
use std::ops::ControlFlow;

use crate::error::{Error, ErrorKind, Result};

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Token for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Upper bound on pages, far above any real account (Route 53 pages hold up
/// to 1,000 items), so that a misbehaving endpoint cannot keep us forever.
pub const MAX_PAGES: usize = 100_000;

/// Fetches pages with `fetch(token)` and hands each page's items to `visit`
/// until the last page or until `visit` breaks with a value.
pub async fn for_each_page<T, R, F, Fut, V>(
    what: &str,
    mut fetch: F,
    mut visit: V,
) -> Result<Option<R>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
    V: FnMut(Vec<T>) -> ControlFlow<R>,
{
    let mut seen = HashSet::new();
    let mut token = None;
    for _ in 0..MAX_PAGES {
        let page = fetch(token.take()).await?;
        if let ControlFlow::Break(r) = visit(page.items) {
            return Ok(Some(r));
        }
        match page.next.filter(|t| !t.is_empty()) {
            None => return Ok(None),
            Some(t) => {
                if !seen.insert(t.clone()) {
                    return Err(Error::new(
                        ErrorKind::Transient,
                        format!("list {what}"),
                        format!("pagination did not advance: marker '{t}' was returned twice"),
                    ));
                }
                token = Some(t);
            }
        }
    }
    Err(Error::new(
        ErrorKind::Transient,
        format!("list {what}"),
        format!("more than {MAX_PAGES} pages"),
    ))
}

/// Collects every item of every page.
pub async fn collect_all<T, F, Fut>(what: &str, fetch: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
{
    let mut all = Vec::new();
    for_each_page(what, fetch, |items| {
        all.extend(items);
        ControlFlow::<()>::Continue(())
    })
    .await?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A fake endpoint serving `pages`, recording the tokens it was asked for.
    fn endpoint(
        pages: Vec<Page<u32>>,
    ) -> (RefCell<Vec<Option<String>>>, impl Fn(usize) -> Page<u32>) {
        (RefCell::new(Vec::new()), move |i| pages[i].clone())
    }

    fn page(items: &[u32], next: Option<&str>) -> Page<u32> {
        Page {
            items: items.to_vec(),
            next: next.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn follows_markers_to_the_end() {
        let (asked, serve) = endpoint(vec![
            page(&[1, 2], Some("a")),
            page(&[3], Some("b")),
            page(&[4], None),
        ]);
        let all = collect_all("things", |tok| {
            let i = asked.borrow().len();
            asked.borrow_mut().push(tok);
            let p = serve(i);
            async move { Ok(p) }
        })
        .await;
        assert_eq!(all.ok(), Some(vec![1, 2, 3, 4]));
        assert_eq!(
            asked.into_inner(),
            vec![None, Some("a".to_owned()), Some("b".to_owned())]
        );
    }

    #[tokio::test]
    async fn stops_early_when_visitor_breaks() {
        let calls = RefCell::new(0);
        let found = for_each_page(
            "things",
            |_tok| {
                *calls.borrow_mut() += 1;
                async { Ok(page(&[7, 8], Some("more"))) }
            },
            |items| match items.iter().find(|x| **x == 8) {
                Some(x) => ControlFlow::Break(*x),
                None => ControlFlow::Continue(()),
            },
        )
        .await;
        assert_eq!(found.ok().flatten(), Some(8));
        assert_eq!(calls.into_inner(), 1);
    }

    #[tokio::test]
    async fn repeated_marker_is_an_error_not_a_loop() {
        let r = collect_all("records", |_tok| async { Ok(page(&[1], Some("same"))) }).await;
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            "failed to list records: pagination did not advance: marker 'same' was returned twice"
        );
    }

    #[tokio::test]
    async fn errors_propagate() {
        let r = collect_all::<u32, _, _>("records", |_tok| async {
            Err(Error::new(ErrorKind::Transient, "list records", "boom"))
        })
        .await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn empty_marker_means_last_page() {
        let r = collect_all("x", |_tok| async { Ok(page(&[1], Some(""))) }).await;
        assert_eq!(r.ok(), Some(vec![1]));
    }
}
