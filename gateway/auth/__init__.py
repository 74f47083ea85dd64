"""Who is asking: authentication (password file, LDAP, OpenID Connect) and the roles it grants.

``Authenticator`` (``authenticator.py``) is the one entry: the admin API, the UI login and, when
configured, the Trino path and the routing rules ask it. The methods live one per module:
``password_file``, ``ldap_directory``, ``oidc``; ``limiter`` slows down password guessing.
"""
