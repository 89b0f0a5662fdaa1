"""Registers the ``central-sql`` sync target with cellbench, and ``cellbench central upgrade``."""

import typer

from cellbench_sdk import Descriptor, Kind, hookimpl
from cellbench_sync_sql.settings import CentralSqlSettings


@hookimpl
def cellbench_sync_targets() -> list[Descriptor]:
    """The central SQL server target."""
    return [
        Descriptor(
            Kind.SYNC_TARGET,
            "central-sql",
            "cellbench_sync_sql.target:CentralSqlTarget",
            "many stations into one central SQL database (PostgreSQL, MariaDB/MySQL, ...)",
            CentralSqlSettings,
        )
    ]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench central upgrade``: create or migrate a central database's schema."""
    central_app = typer.Typer(help="The central database of the central-sql sync target.",
                              no_args_is_help=True)

    @central_app.command("upgrade")
    def upgrade(url: str = typer.Option(..., "--url", show_default=False, help=(
            "SQLAlchemy URL of the central database, e.g. "
            "postgresql+psycopg://cellbench@central.lab/results"))) -> None:
        """Create the central tables, or migrate them to this cellbench's schema (Alembic).

        Safe to repeat, and to run while stations sync: indexes are built online (CREATE INDEX
        CONCURRENTLY on PostgreSQL). Stations also upgrade the central database when their
        sync starts; run this first on a large database, so that none of them waits for it.

        Example: cellbench central upgrade --url postgresql+psycopg://cellbench@central.lab/results
        """
        import sqlalchemy as sa

        from cellbench_sdk.cli import console, fail
        from cellbench_sync_sql import central

        try:
            engine = sa.create_engine(url)
        except sa.exc.ArgumentError as err:
            fail(f"--url {url!r}: not a SQLAlchemy database URL ({err})", code=2)
        except ImportError as err:
            fail(f"--url {url!r}: its database driver is not installed ({err})", code=2)
        shown = engine.url.render_as_string(hide_password=True)
        try:
            before, after = central.upgrade(engine)
        except ValueError as err:
            fail(str(err), code=2)
        except sa.exc.DBAPIError as err:
            fail(f"{shown}: {str(err.orig).strip().splitlines()[0]}", code=2)
        finally:
            engine.dispose()
        if before == after:
            console.print(f"{shown}: central schema is up to date (revision {after})",
                          highlight=False)
        else:
            console.print(f"{shown}: central schema upgraded from revision {before or 'none'} "
                          f"to {after}", highlight=False)

    app.add_typer(central_app, name="central")
