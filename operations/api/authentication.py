from drf_spectacular.authentication import BasicScheme
from rest_framework import authentication, exceptions


class BasicAuthentication(authentication.BasicAuthentication):
    """HTTP basic, refusing user names that no database can hold (a NUL byte hidden in the
    base64 would otherwise reach PostgreSQL and fail there)."""

    def authenticate_credentials(self, userid, password, request=None):
        if "\x00" in userid or "\x00" in password:
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        return super().authenticate_credentials(userid, password, request)


class BasicAuthenticationScheme(BasicScheme):
    """HTTP basic in the OpenAPI schema for the class above (drf-spectacular matches classes
    exactly; without this, `check --deploy` warns and the schema omits basic auth)."""

    target_class = "operations.api.authentication.BasicAuthentication"
