"""Model zoo: names, URLs, hash checks, resumed downloads (against a local HTTP server), offline errors."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from apis.inputs import as_config
from models.checkpoints.model_zoo import (
    MODEL_ZOO,
    ORIGINAL_COMMIT,
    ORIGINAL_RAW,
    ModelZooError,
    download,
    hash_prefix_from_name,
    resolve_checkpoint,
    zoo_config,
)
from tests.conftest import REPO, WEIGHTS, needs_weights

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at every path, honouring ``Range: bytes=N-``; /missing.pth gives 404."""

    requests: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        type(self).requests.append(self.headers.get('Range'))
        if self.path.endswith('missing.pth'):
            self.send_error(404)
            return
        start = int(self.headers['Range'].split('=')[1].rstrip('-')) if self.headers.get('Range') else 0
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    _RangeHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _RangeHandler)
    # shutdown() waits for the loop's next poll: 0.5 s by default
    thread = threading.Thread(target=httpd.serve_forever, kwargs=dict(poll_interval=0.02), daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_hash_prefix_in_openmmlab_names():
    assert hash_prefix_from_name('rtmdet_tiny_8xb32-300e_coco_20220902_112414-78e30dcc.pth') == '78e30dcc'
    mmpose_name = 'td-reg_mobilenetv2_rle-pretrained-8xb64-210e_coco-256x192-39b73bd5_20220922.pth'
    assert hash_prefix_from_name(mmpose_name) == '39b73bd5'
    assert hash_prefix_from_name('rle_mbv2-0.5x_aic-coco-192x192_202403131203.pth') is None
    for entry in MODEL_ZOO.values():
        if entry.url is not None and entry.url.startswith('https://download.openmmlab.com/'):
            assert entry.url.endswith('/' + entry.filename)
            assert hash_prefix_from_name(entry.filename) == entry.sha256
        elif entry.url is not None:  # the original project's files, pinned to one commit
            assert entry.url.startswith(ORIGINAL_RAW) and len(entry.sha256) == 64


def test_url_download_checks_hash_and_is_reused(server, tmp_path):
    url = f'{server}/weights/model-{DIGEST[:8]}.pth'
    path = resolve_checkpoint(url, root=tmp_path, progress=False)
    assert path == tmp_path / f'model-{DIGEST[:8]}.pth' and path.read_bytes() == PAYLOAD
    assert resolve_checkpoint(url, root=tmp_path, progress=False) == path
    assert len(_RangeHandler.requests) == 1  # the second call found the file


def test_bad_hash_deletes_the_download(server, tmp_path):
    with pytest.raises(ModelZooError, match='SHA-256'):
        resolve_checkpoint(f'{server}/model-deadbeef.pth', root=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_partial_download_is_resumed(server, tmp_path):
    dst = tmp_path / 'model.pth'
    (tmp_path / 'model.pth.part').write_bytes(PAYLOAD[:1000])
    download(f'{server}/model.pth', dst, sha256=DIGEST, progress=False)
    assert dst.read_bytes() == PAYLOAD
    assert _RangeHandler.requests == ['bytes=1000-']


def test_http_error_and_no_network_say_where_to_put_the_file(server, tmp_path):
    with pytest.raises(ModelZooError, match=r'HTTP 404.*put it at .*missing\.pth'):
        resolve_checkpoint(f'{server}/missing.pth', root=tmp_path, progress=False)
    closed = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _RangeHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens on this port any more
    with pytest.raises(ModelZooError, match=r'without network access.*put it at .*x-1234abcd\.pth'):
        resolve_checkpoint(f'http://127.0.0.1:{port}/x-1234abcd.pth', root=tmp_path, progress=False)


def test_names_without_url_and_unknown_names(tmp_path):
    with pytest.raises(ModelZooError, match=r'put the file simcc_mbv2-0\.75x_aic-coco-192x192_\d+\.pth at'):
        resolve_checkpoint('simcc-mbv2-0.75x-192x192', root=tmp_path)
    (tmp_path / MODEL_ZOO['simcc-mbv2-0.75x-192x192'].filename).write_bytes(b'x')
    assert resolve_checkpoint('simcc-mbv2-0.75x-192x192', root=tmp_path).parent == tmp_path
    with pytest.raises(ModelZooError, match='checkpoint file not found: no/such/file.pth'):
        resolve_checkpoint('no/such/file.pth', root=tmp_path)
    with pytest.raises(ModelZooError, match='known model name .*rtmdet-tiny'):  # a mistyped name
        resolve_checkpoint('rtmdet-tiy', root=tmp_path)


def test_every_entry_names_an_existing_config_and_names_work_as_configs():
    for name, entry in MODEL_ZOO.items():
        assert entry.config is None or zoo_config(name).is_file(), name
    assert as_config('rtmdet-tiny').model.backbone.widen_factor == 0.375
    assert zoo_config('configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py') is None


def test_existing_file_is_returned_as_is(tmp_path):
    f = tmp_path / 'mine.pth'
    f.write_bytes(b'x')
    assert resolve_checkpoint(str(f)) == Path(str(f))


# ------------------------------------------------- the original project's files, served as GitHub does
ORIGINAL_FILES = {  # zoo name -> the identical file beside the repository
    'rle-mbv2-0.5x-192x192': 'rle_mbv2-0.5x_aic-coco-192x192_202403131203.pth',
    'mbv2-0.5x-imagenet-backbone': 'mobilenet_v2_0.5x_imagenet_backbone.pth',
    'mbv2-0.5x-heatmap-coco-backbone-192x192': 'mobilenetv2_0.5x_heatmap_coco_backbone_192x192.pth',
    'mbv2-0.5x-udp-coco-aic-backbone-192x192': 'mobilenetv2_0.5x_udp_coco_aic_backbone_192x192.pth',
}


class _GitHubRawHandler(http.server.BaseHTTPRequestHandler):
    """Serves the real weight files at the paths of their zoo URLs (``/<path after github.com>``)."""

    files: dict[str, Path] = {}

    def do_GET(self) -> None:  # noqa: N802
        path = type(self).files.get(self.path)
        if path is None:
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def github(monkeypatch):
    """A local server holding the real files at their URL paths; zoo URLs point at it."""
    from urllib.parse import urlparse

    _GitHubRawHandler.files = {urlparse(MODEL_ZOO[name].url).path: WEIGHTS / f
                               for name, f in ORIGINAL_FILES.items()}
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _GitHubRawHandler)
    # shutdown() waits for the loop's next poll: 0.5 s by default
    thread = threading.Thread(target=httpd.serve_forever, kwargs=dict(poll_interval=0.02), daemon=True)
    thread.start()
    base = f'http://127.0.0.1:{httpd.server_address[1]}'
    for name in ORIGINAL_FILES:
        entry = MODEL_ZOO[name]
        monkeypatch.setitem(MODEL_ZOO, name, dataclasses.replace(
            entry, url=entry.url.replace('https://github.com', base)))
    yield base
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@needs_weights
def test_original_project_urls_give_the_real_files(github, tmp_path):
    """Every URL names the commit and path of a published file whose sha256 is the zoo's."""
    for name, filename in ORIGINAL_FILES.items():
        entry = MODEL_ZOO[name]
        assert f'/neesetifa/MMPose_Clean/raw/{ORIGINAL_COMMIT}/' in entry.url
        path = resolve_checkpoint(name, root=tmp_path, progress=False)
        assert path == tmp_path / entry.filename
        assert path.read_bytes() == (WEIGHTS / filename).read_bytes()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256


@needs_weights
def test_init_cfg_zoo_name_downloads_and_loads_the_backbone(github, tmp_path, monkeypatch):
    import torch

    from models import build_pose_estimator
    from models.checkpoints import model_zoo, read_checkpoint

    monkeypatch.setattr(model_zoo, 'DEFAULT_ROOT', tmp_path)
    cfg = as_config(str(REPO / 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py'))
    assert cfg.model.backbone.init_cfg.checkpoint == 'mbv2-0.5x-udp-coco-aic-backbone-192x192'
    model = build_pose_estimator(cfg.model)
    model.init_weights()
    expected = read_checkpoint(WEIGHTS / ORIGINAL_FILES['mbv2-0.5x-udp-coco-aic-backbone-192x192'])
    assert all(torch.equal(v, expected[f'backbone.{k}']) for k, v in model.backbone.state_dict().items())
    assert (tmp_path / MODEL_ZOO['mbv2-0.5x-udp-coco-aic-backbone-192x192'].filename).is_file()


def test_work_dir_checkpoint(tmp_path):
    with pytest.raises(ModelZooError, match='neither best.pth nor last.pth'):
        resolve_checkpoint(tmp_path)
    (tmp_path / 'last.pth').write_bytes(b'x')
    assert resolve_checkpoint(tmp_path) == tmp_path / 'last.pth'
    (tmp_path / 'best.pth').write_bytes(b'x')
    assert resolve_checkpoint(str(tmp_path)) == tmp_path / 'best.pth'


def test_checkpoint_argument_forms():
    import argparse

    from models.checkpoints.model_zoo import add_checkpoint_argument

    parser = argparse.ArgumentParser()
    add_checkpoint_argument(parser, option=True)
    assert parser.parse_args(['a.pth']).checkpoint == 'a.pth'
    assert parser.parse_args(['--checkpoint', 'b.pth']).checkpoint == 'b.pth'
    for argv in ([], ['a.pth', '--checkpoint', 'b.pth']):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    parser = argparse.ArgumentParser()
    add_checkpoint_argument(parser, required=False)
    assert parser.parse_args([]).checkpoint is None
