"""Storage: engines, the schema as SQLAlchemy Core tables, and Alembic migrations."""
