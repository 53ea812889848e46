"""Database access: engines, sessions, the declarative base and Alembic migrations."""
