/*!
craftlb-lambda: the Route 53 lifecycle handler.

Skeleton until its own issue (#4): the workspace member exists so the
release profile, the lock file and CI already cover it.
*/
