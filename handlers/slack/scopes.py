"""Which Slack scopes the app needs and why: the manifest must ask for exactly these.

`METHOD_SCOPES` maps every Web API method the code calls to the bot scope it needs (None: no
scope); `EVENT_SCOPES` every event it subscribes to. The tests check that the manifest asks for
exactly the union, and that every method the app calls in the end-to-end tests is listed here.
"""

from __future__ import annotations

METHOD_SCOPES: dict[str, str | None] = {
    "auth.test": None,                      # Bolt: who the bot is (to ignore its own messages)
    "chat.postMessage": "chat:write",       # questions and answers in the DM; nudges, digests
    "chat.update": "chat:write",            # a clicked question shows the answer, no buttons
    "chat.postEphemeral": "chat:write",     # look-ups and notes only the asker sees
    "users.info": "users:read",             # a new user's name and language (Slack locale)
    "conversations.open": "im:write",       # open the DM with a rep (dialogs, digests)
    "conversations.info": "channels:read",  # /coach channel: is the bot a member? (groups:read
                                            # for private channels)
    "views.open": None,                     # the edit modals (a trigger id is the permission)
    "views.publish": None,                  # the App Home tab
    "files.getUploadURLExternal": "files:write",  # attachments: proposals, charts
    "files.completeUploadExternal": "files:write",
    "apps.connections.open": None,          # Socket Mode (the app-level token's connections:write)
}

EXTRA_METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "conversations.info": ("groups:read",),
}

EVENT_SCOPES: dict[str, str | None] = {
    "message.im": "im:history",  # what a rep types in the DM with the app
    "app_home_opened": None,
}

SLASH_COMMAND_SCOPE = "commands"  # /coach

BOT_SCOPES: frozenset[str] = frozenset(
    {s for s in METHOD_SCOPES.values() if s}
    | {s for extra in EXTRA_METHOD_SCOPES.values() for s in extra}
    | {s for s in EVENT_SCOPES.values() if s}
    | {SLASH_COMMAND_SCOPE}
)
