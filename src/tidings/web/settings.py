"""Settings: members and roles, API keys, timezones and platform apps."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
