"""The demo page in a real browser: Debian's headless Chromium driven by Selenium, against the demo server
serving a tiny exported model on a free port of 127.0.0.1. Nothing is downloaded: the browser is the system's,
and every host but 127.0.0.1 is unresolvable inside it, so the page is checked to work offline."""
import os
import time

import numpy as np
import pytest

from bench.demo_screenshot import CHROMEDRIVER, CHROMIUM, free_port, pick_example, start_chromium
from tests.helpers_demo import save_demo_model
from tests.helpers_restore import rand_image, write_png

INSTALL = ("needs Debian's headless Chromium and its driver (apt-get install -y chromium chromium-driver) and "
           "the Python packages selenium and gradio (pip install -e \".[dev]\")")
WAIT = 30  # seconds for one step of the page on a loaded CI machine


def _missing():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    for mod in ("selenium", "gradio"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    return missing


pytestmark = pytest.mark.skipif(bool(_missing()), reason=f"missing {', '.join(_missing())}: the browser test "
                                                         f"{INSTALL}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo page over a tiny exported model (with a classifier) on a free port; its session."""
    from pip_adapter.demo import DemoSession
    from pip_adapter.demo.app import launch
    from pip_adapter.restore import Restorer

    root = tmp_path_factory.mktemp("demo_server")
    model = save_demo_model(root / "bundle.safetensors")
    session = DemoSession(Restorer.from_checkpoint(model, device="cpu"), workdir=str(root / "work"), tile=32,
                          tile_overlap=8)
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    cwd = root / "cwd"
    cwd.mkdir()
    os.chdir(cwd)  # the server must write nothing here (only in the session's folder)
    try:
        port = free_port()
        app = launch(session, host="127.0.0.1", port=port, block=False)
        yield f"http://127.0.0.1:{port}/", session, str(cwd)
        app.close()
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        session.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium (the system's) and the folder it downloads to."""
    root = str(tmp_path_factory.mktemp("chromium"))
    driver = start_chromium(root)
    yield driver, os.path.join(root, "downloads")
    driver.quit()


def _open(driver, url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#demo-upload input[type=file]"))


def _text(driver, elem_id):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, elem_id).text


def _wait(driver, cond):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(cond)


def test_upload_slider_restore_download(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from pip_adapter.image_io import read_image_raw

    url, session, _ = server
    driver, downloads = browser
    src = write_png(tmp_path / "photo16.png", rand_image(40, 56, 3, np.uint16, seed=3))
    _open(driver, url)
    driver.find_element(By.CSS_SELECTOR, "#demo-upload input[type=file]").send_keys(src)
    _wait(driver, lambda d: "photo16.png: 56×40, RGB, 16-bit" in _text(d, "demo-info"))
    # move the "rain" slider to 0.8 through its number box, as a user typing a value
    box = driver.find_element(By.CSS_SELECTOR, "#demo-omega-1 input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("0.8", Keys.TAB)
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#demo-omega-1 input[type=range]")
          .get_attribute("value") == "0.8")
    driver.find_element(By.ID, "demo-restore").click()
    _wait(driver, lambda d: "ω used" in _text(d, "demo-result"))
    result = _text(driver, "demo-result")
    assert "rain 0.80" in result and "noise 0.00" in result and "haze 0.00" in result
    assert "tiles" in result  # 56×40 with 32-px tiles
    driver.find_element(By.ID, "demo-download").click()
    got = _wait(driver, lambda d: [f for f in os.listdir(downloads) if f.endswith(".png")
                                   and not f.endswith(".crdownload")])
    path = os.path.join(downloads, got[0])
    _wait(driver, lambda d: os.path.getsize(path) > 0)
    time.sleep(0.2)  # let Chromium finish the rename/flush
    assert got[0] == "photo16_restored.png"
    out, info = read_image_raw(path)
    assert out.shape == (40, 56, 3) and out.dtype == np.uint16 and info.alpha is None
    # the file downloaded is the server's result, byte for byte
    produced = [os.path.join(d, f) for d, _, fs in os.walk(session.workdir) for f in fs
                if f == "photo16_restored.png" and os.sep + "results" + os.sep in os.path.join(d, f)]
    assert len(produced) == 1
    with open(produced[0], "rb") as a, open(path, "rb") as b:
        assert a.read() == b.read()
    # a new input clears the result: the download never offers another image's result
    driver.find_element(By.CSS_SELECTOR, "#demo-upload button[aria-label='Clear']").click()
    _wait(driver, lambda d: "ω used" not in _text(d, "demo-result"))
    assert not driver.find_element(By.ID, "demo-download").is_enabled()
    # offline: the page loaded nothing from another host
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(url) or u.startswith("data:") or u.startswith("blob:") for u in urls), urls


def test_broken_file_shows_a_message(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, _, _ = server
    driver, _ = browser
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not an image at all")
    _open(driver, url)
    driver.find_element(By.CSS_SELECTOR, "#demo-upload input[type=file]").send_keys(str(broken))
    _wait(driver, lambda d: "broken.png" in _text(d, "demo-message"))
    message = _text(driver, "demo-message")
    assert "cannot read the image broken.png" in message and "PNG, JPEG or TIFF" in message
    assert "/" not in message.split("broken.png")[0]  # the user's file name, not the server's path


def test_builtin_example_auto_and_pure_type(server, browser):
    from selenium.webdriver.common.by import By

    url, session, _ = server
    driver, _ = browser
    _open(driver, url)
    label = "chelsea · rain"
    pick_example(driver, label)
    _wait(driver, lambda d: "chelsea.png" in _text(d, "demo-info"))
    # auto: the classifier's probabilities as bars, its top type one-hot in the sliders
    driver.find_element(By.ID, "demo-auto").click()
    probs = session.classify(session.example(label).path)
    top = max(probs, key=probs.get)
    _wait(driver, lambda d: top in _text(d, "demo-probs"))
    values = [float(driver.find_element(By.CSS_SELECTOR, f"#demo-omega-{i} input[type=number]")
                    .get_attribute("value")) for i in range(len(probs))]
    assert values == [1.0 if n == top else 0.0 for n in probs]
    # one click on a pure type sets the sliders one-hot; the example's clean photo is the ground truth
    driver.find_element(By.CSS_SELECTOR, "#demo-pure input[value='haze']").click()
    _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#demo-omega-2 input[type=number]")
          .get_attribute("value") == "1")
    driver.find_element(By.ID, "demo-restore").click()
    _wait(driver, lambda d: "PSNR" in _text(d, "demo-result"))
    result = _text(driver, "demo-result")
    assert "haze 1.00" in result and "rain 0.00" in result and "chelsea.png" in result


def test_nothing_written_outside_the_temp_folder(server):
    _, session, cwd = server
    assert os.listdir(cwd) == []
    uploads = [f for d, _, fs in os.walk(os.path.join(session.workdir, "gradio")) for f in fs]
    assert "photo16.png" in uploads and "broken.png" in uploads  # Gradio's copies of the uploads live there


def _radio(driver):
    from selenium.webdriver.common.by import By
    checked = [e.get_attribute("value") for e in driver.find_elements(By.CSS_SELECTOR, "#demo-pure input")
               if e.is_selected()]
    return checked[0] if checked else None


def _omega(driver, n):
    from selenium.webdriver.common.by import By
    return [float(driver.find_element(By.CSS_SELECTOR, f"#demo-omega-{i} input[type=number]").get_attribute("value"))
            for i in range(n)]


def _set_omega(driver, i, value):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    box = driver.find_element(By.CSS_SELECTOR, f"#demo-omega-{i} input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)


def test_controls_stay_in_sync(server, browser, tmp_path):
    """The sequences of issue 23: every control shows the state the page is in."""
    from selenium.webdriver.common.by import By

    url, session, _ = server
    driver, _ = browser
    names = session.degradations
    _open(driver, url)
    pick_example(driver, "chelsea · rain")
    _wait(driver, lambda d: "chelsea.png" in _text(d, "demo-info"))
    # a pure type, then auto: the radio follows the sliders auto set (it kept showing the old type)
    driver.find_element(By.CSS_SELECTOR, "#demo-pure input[value='low_light']").click()
    _wait(driver, lambda d: _omega(d, len(names))[names.index("low_light")] == 1.0)
    driver.find_element(By.ID, "demo-auto").click()
    probs = session.classify(session.example("chelsea · rain").path)
    top = max(probs, key=probs.get)
    _wait(driver, lambda d: top in _text(d, "demo-probs"))
    _wait(driver, lambda d: _radio(d) == top)
    assert _omega(driver, len(names)) == [1.0 if n == top else 0.0 for n in names]
    # restore, then change ω: the result on screen is marked out of date until Restore runs again
    driver.find_element(By.ID, "demo-restore").click()
    _wait(driver, lambda d: "ω used" in _text(d, "demo-result"))
    assert _text(driver, "demo-stale") == ""
    other = names.index("haze") if top != "haze" else names.index("rain")
    _set_omega(driver, other, 0.5)
    _wait(driver, lambda d: "ω changed since this result" in _text(d, "demo-stale"))
    _wait(driver, lambda d: _radio(d) is None)   # a mix is no pure type
    _set_omega(driver, other, 0)                 # back to the weights of the result: up to date again
    _wait(driver, lambda d: _text(d, "demo-stale") == "")
    _set_omega(driver, other, 0.25)
    _wait(driver, lambda d: "ω changed" in _text(d, "demo-stale"))
    driver.find_element(By.ID, "demo-restore").click()
    _wait(driver, lambda d: _text(d, "demo-stale") == "" and f"{names[other]} 0.25" in _text(d, "demo-result"))
    # a new example: the previous image's classifier bars, result and note are gone
    pick_example(driver, "rocket · haze")
    _wait(driver, lambda d: "rocket.png" in _text(d, "demo-info"))
    _wait(driver, lambda d: top not in _text(d, "demo-probs") and "ω used" not in _text(d, "demo-result"))
    # a broken upload, then Restore: the complaint is about the image, not about ω
    broken = tmp_path / "broken_sync.png"
    broken.write_bytes(b"not an image")
    driver.find_element(By.CSS_SELECTOR, "#demo-upload button[aria-label='Clear']").click()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#demo-upload input[type=file]"))
    driver.find_element(By.CSS_SELECTOR, "#demo-upload input[type=file]").send_keys(str(broken))
    _wait(driver, lambda d: "broken_sync.png" in _text(d, "demo-message"))
    for i in range(len(names)):
        _set_omega(driver, i, 0)
    driver.find_element(By.ID, "demo-restore").click()
    time.sleep(1)
    _wait(driver, lambda d: "broken_sync.png" in _text(d, "demo-message"))
    assert "cannot read the image" in _text(driver, "demo-message") and "ω" not in _text(driver, "demo-message")


def test_nothing_is_cut_off(server, browser, tmp_path):
    """The ground-truth box shows its whole label; the before/after frame shows the whole of a 512×408 image."""
    from selenium.webdriver.common.by import By

    url, _, _ = server
    driver, _ = browser
    _open(driver, url)
    clipped = driver.execute_script(
        "return [...document.querySelectorAll('#demo-gt *, #demo-upload *')]"
        ".filter(e => e.scrollHeight > e.clientHeight + 1).map(e => e.innerText)")
    assert clipped == [], f"clipped: {clipped}"
    assert "Click to Upload" in _text(driver, "demo-gt")
    src = write_png(tmp_path / "wide.png", rand_image(408, 512, 3, seed=5))
    driver.find_element(By.CSS_SELECTOR, "#demo-upload input[type=file]").send_keys(src)
    _wait(driver, lambda d: "wide.png: 512×408" in _text(d, "demo-info"))
    driver.find_element(By.CSS_SELECTOR, "#demo-pure input[value='rain']").click()
    _wait(driver, lambda d: _omega(d, 5)[1] == 1.0)
    driver.find_element(By.ID, "demo-restore").click()
    _wait(driver, lambda d: "ω used" in _text(d, "demo-result"))
    time.sleep(0.5)   # let the image lay out
    frame, boxes = driver.execute_script(
        "const c = document.getElementById('demo-compare'); const r = c.getBoundingClientRect();"
        "return [[r.top, r.bottom, r.left, r.right], [...c.querySelectorAll('img')].map(i => {"
        "const b = i.getBoundingClientRect(); return [i.naturalWidth, i.naturalHeight, b.top, b.bottom, b.left,"
        " b.right]; })];")
    assert boxes
    for nw, nh, top, bottom, left, right in boxes:
        assert (nw, nh) == (512, 408)
        # the picture's box is inside the frame and has the picture's own shape: nothing letterboxed or cut
        assert frame[0] <= top and bottom <= frame[1] + 0.5 and frame[2] <= left and right <= frame[3] + 0.5
        assert (right - left) / (bottom - top) == pytest.approx(512 / 408, rel=0.01)
