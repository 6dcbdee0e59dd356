from tests.helpers import csrf_token


def test_front_page_is_sign_in(client):
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "登录" in html and 'name="password"' in html
    assert csrf_token(html)


def test_login_rejects_post_without_csrf(client, make_user):
    make_user("boss")
    response = client.post("/", data={"username": "boss", "password": "test-password-1"})
    assert response.status_code == 400
    assert "表单已过期" in response.get_data(as_text=True)


def test_login_and_counties_page(client, login, make_user, make_county):
    make_county("岳阳县")
    make_user("boss")
    login("boss")
    page = client.get("/org/")
    assert page.status_code == 200
    assert "岳阳县" in page.get_data(as_text=True)
