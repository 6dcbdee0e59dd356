import uuid
from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.core.masking import scrub_ids
from app.core.storage import save_private
from app.core.transactions import transaction
from app.auth.scope import roles_required
from app.extensions import db
from app.models import audit, County, ImportBatch
from app.roster import bp
from app.roster.context import import_context
from app.roster.forms import ConfirmForm, UploadForm
from app.core.sheets import SUPPORTED_SUFFIXES
from app.roster.importer import file_sha256, import_and_commit, is_database_locked, lock_preview
from app.roster.batch import AlreadyConfirmed, ImportBusy, ImportFailed, ImportOptions

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
        save_private(upload.stream, tmp)
        # a name of its own: the file is deleted with its batch, whoever uploads the same file
        stored = f"{file_sha256(tmp)[:16]}-{uuid.uuid4().hex[:16]}{suffix}"
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
            (upload_dir / stored).unlink(missing_ok=True)  # a failed batch keeps no upload
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
        report_kept=_report_path(batch, "csv") is not None,
        upload_kept=_upload_path(batch) is not None,
        retention_hours=current_app.config["UPLOAD_RETENTION_HOURS"],
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
    here = url_for("roster.batch", batch_id=batch_id)
    try:
        # the check that it was not confirmed already, and the import, under one lock: a
        # second click waits for the first to commit, then finds it
        applied = lock_preview(db.session, batch_id)
    except ImportBusy as exc:
        flash(str(exc), "error")
        return redirect(here)
    preview = db.get_or_404(ImportBatch, batch_id)
    if preview.status == "cancelled":
        db.session.rollback()
        flash("该批次已取消，上传的文件已删除；如需导入请重新上传。", "error")
        return redirect(here)
    if preview.status != "preview" or not preview.source_file:
        abort(404)
    if applied is not None:
        db.session.rollback()
        flash("该批次已确认导入。", "info")
        return redirect(here)
    path = Path(current_app.config["UPLOAD_DIR"]) / preview.source_file
    if not path.exists() or file_sha256(path) != preview.sha256:
        db.session.rollback()
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
    except AlreadyConfirmed:
        flash("该批次已确认导入。", "info")
        return redirect(here)
    except ImportBusy as exc:
        flash(str(exc), "error")
        return redirect(here)
    except ImportFailed as exc:
        path.unlink(missing_ok=True)  # a failed batch keeps no upload
        flash(f"导入失败，数据库未作更改：{exc}", "error")
        return redirect(here)
    except OperationalError as exc:
        if not is_database_locked(exc):
            raise
        db.session.rollback()
        flash(str(ImportBusy()), "error")
        return redirect(here)
    path.unlink(missing_ok=True)  # confirmed: the upload is not kept
    flash("导入完成：" + _summary_zh(result), "success")
    return redirect(url_for("roster.batch", batch_id=result.batch_id))


@bp.route("/batches/<int:batch_id>/cancel", methods=["POST"])
@login_required
@roles_required("admin")
def cancel(batch_id: int):
    """Give up a preview: its upload is deleted and it can no longer be confirmed."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    here = url_for("roster.batch", batch_id=batch_id)
    try:
        applied = lock_preview(db.session, batch_id)  # not while a confirmation imports the file
        with transaction(db.session):
            preview = db.get_or_404(ImportBatch, batch_id)
            if preview.status not in ("preview", "cancelled"):
                abort(404)
            stored = preview.source_file
            if applied is None and preview.status == "preview":
                preview.status, preview.source_file = "cancelled", None
                audit(db.session, "roster.import.cancelled", current_user,
                      target=f"import_batch:{preview.id} {preview.filename}")
    except ImportBusy as exc:
        flash(str(exc), "error")
        return redirect(here)
    if applied is not None:
        flash("该批次已确认导入，不能取消。", "info")
        return redirect(here)
    if stored:
        (Path(current_app.config["UPLOAD_DIR"]) / stored).unlink(missing_ok=True)
    flash("已取消这次导入，上传的文件已删除。", "success")
    return redirect(here)


@bp.route("/batches/<int:batch_id>/report.<fmt>")
@login_required
@roles_required("admin")
def report(batch_id: int, fmt: str):
    batch = db.get_or_404(ImportBatch, batch_id)
    path = _report_path(batch, fmt) if fmt in ("xlsx", "csv") else None
    if path is None:
        abort(404)
    with transaction(db.session):
        audit(db.session, "export.import_errors", current_user, target=f"import_batch:{batch.id}", detail=path.name)
    return send_file(path, as_attachment=True, download_name=f"导入错误报告-{batch.id}.{fmt}")


def _summary_zh(result) -> str:
    return (
        f"读取 {result.read} 行，新增 {result.imported}，更新 {result.updated}，"
        f"未变 {result.unchanged}，拒绝 {result.rejected}"
    )


def _report_path(batch: ImportBatch, fmt: str) -> Path | None:
    """The batch's error report, while it is kept (see UPLOAD_RETENTION_HOURS)."""
    if not batch.error_report:
        return None
    path = Path(current_app.config["IMPORT_REPORTS_DIR"]) / f"{batch.error_report}.{fmt}"
    return path if path.exists() else None


def _upload_path(batch: ImportBatch) -> Path | None:
    """The preview's uploaded file, while it is kept: until the batch is confirmed or cancelled,
    or for UPLOAD_RETENTION_HOURS."""
    if not batch.source_file:
        return None
    path = Path(current_app.config["UPLOAD_DIR"]) / batch.source_file
    return path if path.exists() else None


def _read_report_head(batch: ImportBatch) -> list[dict]:
    path = _report_path(batch, "csv")
    if path is None:
        return []
    import pandas as pd

    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False, nrows=PREVIEW_ROWS)
    # reports are written masked; a report written before that rule is masked as it is shown
    return [{key: scrub_ids(value) for key, value in row.items()} for row in frame.to_dict("records")]
