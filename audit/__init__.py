"""The audit trail: who did what to which record, when and from where (append-only)."""
