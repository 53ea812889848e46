"""The calendar (month and week, in the viewer's timezone) and the list of posts."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
