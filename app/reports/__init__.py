from flask import Blueprint

# Views are attached in routes.py and problem_routes.py, imported by create_app(). Rules are
# written out in full: the reports live under /reports/, and the progress board keeps its
# address /calls/board.
bp = Blueprint("reports", __name__)
