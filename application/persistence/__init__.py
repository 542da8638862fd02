"""The event log and the mechanics under it: sealing personal values, transcoding stored events,
the accounts each process has shown, what a projection is, and copying an old store into a sealed one."""
