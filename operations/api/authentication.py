from django.utils.translation import gettext_lazy as _
from drf_spectacular.authentication import BasicScheme
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from operations.compiled_query import CompiledQuery
from operations.logins import LoginsLocked

_TOKEN_BY_KEY = CompiledQuery(lambda key: Token.objects.select_related("user").filter(key=key), kind=str)


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, with the token's SQL built once (see compiled_query): every
    polling client's request looks its token up."""

    def authenticate_credentials(self, key):
        token = _TOKEN_BY_KEY.first(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token


class BasicAuthentication(authentication.BasicAuthentication):
    """HTTP basic, refusing user names that no database can hold (a NUL byte hidden in the
    base64 would otherwise reach PostgreSQL and fail there), and refusing with a 429, before
    the password is hashed, a client whose failed logins reached a limit (see operations.logins)."""

    def authenticate_credentials(self, userid, password, request=None):
        if "\x00" in userid or "\x00" in password:
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        try:
            return super().authenticate_credentials(userid, password, request)
        except LoginsLocked as locked:
            raise exceptions.Throttled(wait=locked.wait, detail=str(locked)) from None


class BasicAuthenticationScheme(BasicScheme):
    """HTTP basic in the OpenAPI schema for the class above (drf-spectacular matches classes
    exactly; without this, `check --deploy` warns and the schema omits basic auth)."""

    target_class = "operations.api.authentication.BasicAuthentication"
