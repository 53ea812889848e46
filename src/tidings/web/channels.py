"""Channels: connecting, checking and reconnecting accounts; a sandbox channel's feed."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
