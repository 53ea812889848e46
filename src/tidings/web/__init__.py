"""The web app: server-rendered pages (Jinja2 + htmx, assets vendored in `static/`) for the
people who write, approve and watch posts. It calls the same services as the JSON API.

Pages live under `/app/` (and `/` itself: the first run, or the way in). A page needs a
signed-in person (the API's session cookie); every form carries the session's CSRF token,
checked before anything is done; each action answers with a redirect and a flash message.
"""
