"""The audit trail: how an event reads in it, its hash-chained export, and the store's past."""
