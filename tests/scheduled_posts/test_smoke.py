from tests.world import World


async def test_create_and_read_back(world: World) -> None:
    api = world.api()
    r = await api.post("/scheduled-posts", json=world.post_body())
    assert r.status_code == 201, r.text
    doc = r.json()
    r2 = await api.get(f"/scheduled-posts/{doc['id']}")
    assert r2.status_code == 200
    assert r2.json() == doc
