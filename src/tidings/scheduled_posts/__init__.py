"""Scheduled posts: the mutable lifecycle from draft through approval to publishing."""
