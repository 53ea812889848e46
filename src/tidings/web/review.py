"""The approval queue and a post's own page (results, attempts, history, actions)."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
