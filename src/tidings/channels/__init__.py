"""Channels: the accounts a workspace publishes to."""
