import uuid
from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from app.core.transactions import transaction
from app.auth.scope import roles_required
from app.extensions import db
from app.models import audit, County, ImportBatch
from app.roster import bp
from app.roster.context import import_context
from app.roster.forms import ConfirmForm, UploadForm
from app.core.sheets import SUPPORTED_SUFFIXES
from app.roster.importer import file_sha256, import_and_commit
from app.roster.batch import ImportFailed, ImportOptions

PREVIEW_ROWS = 200


def _context():
    return import_context(current_app, actor=current_user.username, user_id=current_user.id)


@bp.route("/import", methods=["GET", "POST"])
@login_required
@roles_required("admin")
def upload():
    form = UploadForm()
    counties = db.session.scalars(select(County).order_by(County.code)).all()
    form.county.choices = [("", "按文件中的“县区”列或机构名匹配")] + [(c.name, c.name) for c in counties]
    if form.validate_on_submit():
        upload = form.file.data
        original = Path(upload.filename or "roster").name[:200]
        suffix = Path(original).suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            flash("只支持 .xlsx、.xls、.csv 文件。", "error")
            return render_template("roster/upload.html", form=form), 400
        upload_dir = Path(current_app.config["UPLOAD_DIR"])
        tmp = upload_dir / f".upload-{uuid.uuid4().hex}{suffix}"
        upload.save(tmp)
        stored = f"{file_sha256(tmp)}{suffix}"
        tmp.replace(upload_dir / stored)
        options = ImportOptions(
            county=form.county.data or None,
            create_missing=form.create_missing.data,
            full=form.full.data,
            dry_run=True,
        )
        try:
            result = import_and_commit(
                db.session, upload_dir / stored, options, _context(), original, source_file=stored
            )
        except ImportFailed as exc:
            flash(f"文件无法导入：{exc}", "error")
            return render_template("roster/upload.html", form=form), 400
        return redirect(url_for("roster.batch", batch_id=result.batch_id))
    return render_template("roster/upload.html", form=form)


@bp.route("/batches")
@login_required
@roles_required("admin")
def batches():
    page = db.paginate(select(ImportBatch).order_by(ImportBatch.id.desc()), per_page=30)
    return render_template("roster/batches.html", page=page)


@bp.route("/batches/<int:batch_id>")
@login_required
@roles_required("admin")
def batch(batch_id: int):
    batch = db.get_or_404(ImportBatch, batch_id)
    confirmed = db.session.scalar(select(ImportBatch).where(ImportBatch.preview_of_id == batch.id))
    rejections = _read_report_head(batch)
    return render_template(
        "roster/batch.html",
        batch=batch,
        confirmed=confirmed,
        rejections=rejections,
        preview_rows=PREVIEW_ROWS,
        confirm_form=ConfirmForm(),
    )


@bp.route("/batches/<int:batch_id>/confirm", methods=["POST"])
@login_required
@roles_required("admin")
def confirm(batch_id: int):
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    preview = db.get_or_404(ImportBatch, batch_id)
    if preview.status != "preview" or not preview.source_file:
        abort(404)
    path = Path(current_app.config["UPLOAD_DIR"]) / preview.source_file
    if not path.exists() or file_sha256(path) != preview.sha256:
        flash("预览时上传的文件已不存在，请重新上传。", "error")
        return redirect(url_for("roster.upload"))
    options = ImportOptions(
        county=preview.county.name if preview.county else None,
        create_missing=preview.create_missing,
        full=preview.full,
    )
    try:
        result = import_and_commit(
            db.session, path, options, _context(), preview.filename, source_file=preview.source_file, preview_of_id=preview.id
        )
    except ImportFailed as exc:
        flash(f"导入失败，数据库未作更改：{exc}", "error")
        return redirect(url_for("roster.batch", batch_id=batch_id))
    flash("导入完成：" + _summary_zh(result), "success")
    return redirect(url_for("roster.batch", batch_id=result.batch_id))


@bp.route("/batches/<int:batch_id>/report.<fmt>")
@login_required
@roles_required("admin")
def report(batch_id: int, fmt: str):
    batch = db.get_or_404(ImportBatch, batch_id)
    if fmt not in ("xlsx", "csv") or not batch.error_report:
        abort(404)
    path = Path(current_app.config["IMPORT_REPORTS_DIR"]) / f"{batch.error_report}.{fmt}"
    if not path.exists():
        abort(404)
    with transaction(db.session):
        audit(db.session, "export.import_errors", current_user, target=f"import_batch:{batch.id}", detail=path.name)
    return send_file(path, as_attachment=True, download_name=f"导入错误报告-{batch.id}.{fmt}")


def _summary_zh(result) -> str:
    return (
        f"读取 {result.read} 行，新增 {result.imported}，更新 {result.updated}，"
        f"未变 {result.unchanged}，拒绝 {result.rejected}"
    )


def _read_report_head(batch: ImportBatch) -> list[dict]:
    if not batch.error_report:
        return []
    path = Path(current_app.config["IMPORT_REPORTS_DIR"]) / f"{batch.error_report}.csv"
    if not path.exists():
        return []
    import pandas as pd

    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False, nrows=PREVIEW_ROWS)
    return frame.to_dict("records")
