//! Workspace-level end-to-end tests live in `tests/` of this crate: the worker binaries under a
//! real PM2 with the checklist's settings, the deployment scripts, and the demo.
