"""Pure domain: accounts, groups, mappings, targets, decisions and the planner. No I/O, no SDKs."""
