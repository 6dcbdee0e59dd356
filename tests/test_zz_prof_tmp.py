import cProfile, pstats, re, time, io
from sqlalchemy import event
from app.extensions import db
from tests.calls_support import drawn_round, post, sign_in, clock, setup  # noqa
from tests.calls_support import at

def test_prof(app, county, make_team, make_user, clock, login, client):
    insts = tuple(f"第{i}卫生院" for i in range(120))
    s = drawn_round(county, make_team, make_user, per_team=(30,), institutions=insts)
    login(s.caller.username)
    r = post(client, "/calls/next")
    case = int(r.headers["Location"].rsplit("/", 1)[1])
    client.get(f"/calls/case/{case}")
    counts = {"n": 0}
    stats = {}
    def before(conn, cursor, statement, params, context, executemany):
        counts["n"] += 1
        conn.info["t0"] = time.perf_counter()
    def after(conn, cursor, statement, params, context, executemany):
        d = time.perf_counter() - conn.info["t0"]
        key = " ".join(statement.split())[:160]
        n, tot = stats.get(key, (0, 0.0)); stats[key] = (n + 1, tot + d)
    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    times = []
    prof = cProfile.Profile()
    for i in range(30):
        page = client.get(f"/calls/case/{case}").get_data(as_text=True)
        number = re.search(r'name="number" value="(\d+)"', page).group(1)
        tok = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        counts["n"] = 0
        t = time.perf_counter()
        prof.enable()
        r = client.post(f"/calls/case/{case}/attempt", data={"outcome": "no_answer", "number": number, "csrf_token": tok})
        prof.disable()
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.status_code
        case = int(re.search(r'data-case="(\d+)"', r.get_data(as_text=True)).group(1))
    times.sort()
    print("\nms p50", times[len(times)//2], "p90", times[int(len(times)*.9)], "queries", counts["n"])
    for k, (n, tot) in sorted(stats.items(), key=lambda kv: -kv[1][1])[:14]:
        print(f"{tot*1000/30:7.2f} ms/req  n={n:4d}  {k}")
    st = io.StringIO(); pstats.Stats(prof, stream=st).sort_stats("cumulative").print_stats(5)


def test_explain(app, county, make_team, make_user, clock):
    from sqlalchemy import text
    from app.calls.queue import _candidates
    from tests.calls_support import CALLS
    insts = tuple(f"第{i}卫生院" for i in range(120))
    s = drawn_round(county, make_team, make_user, per_team=(30,), institutions=insts)
    stmt = _candidates(db.session, s.round.id, s.caller, at(23, 9, 30), CALLS).limit(1).with_for_update(of=__import__("app.models", fromlist=["Case"]).Case, skip_locked=True)
    sql = str(stmt.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    db.session.execute(text("ANALYZE"))
    for _ in range(3):
        rows = db.session.execute(text("EXPLAIN ANALYZE " + sql)).all()
    print("\n".join(r[0] for r in rows))
