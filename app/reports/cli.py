"""`flask report …`: the rankings table and the monthly workbook from the command line."""
from flask.cli import AppGroup

report_cli = AppGroup("report", help="报表：排名、月度报告")
