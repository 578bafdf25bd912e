"""Model zoo: names, URLs, hash checks, resumed downloads (against a local HTTP server), offline errors."""
from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from apis.inputs import as_config
from utils.model_zoo import (
    MODEL_ZOO,
    ModelZooError,
    download,
    hash_prefix_from_name,
    resolve_checkpoint,
    zoo_config,
)

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
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
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
        if entry.url is not None:
            assert entry.url.startswith('https://download.openmmlab.com/')
            assert entry.url.endswith('/' + entry.filename)
            assert hash_prefix_from_name(entry.filename) == entry.sha256


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
    with pytest.raises(ModelZooError, match=r'put the file rle_mbv2-0\.5x_aic-coco-192x192_\d+\.pth at'):
        resolve_checkpoint('rle-mbv2-0.5x-192x192', root=tmp_path)
    (tmp_path / MODEL_ZOO['rle-mbv2-0.5x-192x192'].filename).write_bytes(b'x')
    assert resolve_checkpoint('rle-mbv2-0.5x-192x192', root=tmp_path).parent == tmp_path
    with pytest.raises(ModelZooError, match='rtmdet-tiny'):
        resolve_checkpoint('no/such/file.pth', root=tmp_path)


def test_every_entry_names_an_existing_config_and_names_work_as_configs():
    for name in MODEL_ZOO:
        assert zoo_config(name).is_file(), name
    assert as_config('rtmdet-tiny').model.backbone.widen_factor == 0.375
    assert zoo_config('configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py') is None


def test_existing_file_is_returned_as_is(tmp_path):
    f = tmp_path / 'mine.pth'
    f.write_bytes(b'x')
    assert resolve_checkpoint(str(f)) == Path(str(f))
