"""Database adapter: SQLAlchemy models, repositories, migrations."""
