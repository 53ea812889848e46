"""The publishing engine: durable tasks in the database, claimed by workers."""
