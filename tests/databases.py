"""A fresh PostgreSQL database for tools that need one of their own (`make bench`, `make chaos`).
No Django here: they call this before Django is set up."""


def recreate_postgres_database(url: str, *, suffix: str = "") -> str:
    """Drop and create the database of `url`, its name followed by `suffix`, on `url`'s server;
    return the URL of the new database."""
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(url)
    name = db["NAME"] + suffix
    server = {
        "host": db["HOST"] or "127.0.0.1",
        "port": db["PORT"] or 5432,
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
    }
    with psycopg.connect(**server, dbname="postgres", autocommit=True) as maintenance:
        maintenance.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        maintenance.execute(f'CREATE DATABASE "{name}"')
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{server['host']}:{server['port']}/{name}"
