"""The composer: a new post or an edit, with live validation per channel."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
