"""Orchestration over the studies: the audit, `actlab compare` on a user's data, and user claims."""
