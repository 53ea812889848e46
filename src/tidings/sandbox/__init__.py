"""The sandbox network: a fake social network inside Tidings, with its own record.

It stands where a remote platform would: it keeps what it "published" in its own tables,
committed in its own transactions before it answers, separate from the engine's state. The
sandbox connector (`tidings.platforms.sandbox`) is its client.
"""
