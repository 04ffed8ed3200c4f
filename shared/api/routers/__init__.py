"""The admin API's routers (included by :func:`shared.api.app.create_app`)."""
