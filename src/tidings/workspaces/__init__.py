"""Workspaces isolate everything; members hold a role in one."""
