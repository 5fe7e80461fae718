#!/usr/bin/env python3
"""Drives walfold's status page in Debian's headless Chromium (python3-selenium with
chromium-driver; no browser download). Called by tests/observe/observe_it.cpp.

  status_page.py load URL SCREENSHOT      load the page, wait for data, save a screenshot
  status_page.py compare URL              the numbers shown equal /metrics (after a sync)
  status_page.py retry URL KEY SCREENSHOT retry dead key KEY from the page (with its
                                          confirmation), screenshot of the confirmation
Exit 0 when every check holds; a failure prints what differed.
"""
import re
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1500", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def open_page(d, url):
    d.get(url)
    WebDriverWait(d, 30).until(
        lambda x: x.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))


def number(d, element_id):
    text = d.find_element(By.ID, element_id).text.replace(",", "")
    return int(text) if re.fullmatch(r"\d+", text) else None


def metrics(url):
    text = urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{")[0]
        values[name] = values.get(name, 0) + float(value)  # summed over labels
        values[series] = float(value)
    return values


def cmd_load(url, shot):
    d = browser()
    try:
        open_page(d, url)
        shown = {i: number(d, i) for i in ("commits-received", "rows-folded", "jobs-folded")}
        d.save_screenshot(shot)
        print("page loaded:", shown, "screenshot:", shot)
        if shown["commits-received"] is None:
            print("FAIL: no commits counter shown")
            return 1
        return 0
    finally:
        d.quit()


def cmd_compare(url):
    pairs = {"commits-received": "walfold_commits_received_total",
             "rows-received": "walfold_rows_received_total",
             "jobs-enqueued": "walfold_jobs_enqueued_total",
             "jobs-folded": "walfold_jobs_folded_total",
             "rows-folded": "walfold_rows_folded_total",
             "mongodb-write-commands": "walfold_mongodb_write_commands_total",
             "dead-count": 'walfold_queue_keys{state="dead"}',
             "lag-bytes": "walfold_replication_lag_bytes"}
    d = browser()
    try:
        open_page(d, url)
        diff = {}
        for _ in range(20):  # the page refreshes every 2 s; the sampler every second
            m = metrics(url)
            shown = {k: number(d, k) for k in pairs}
            diff = {k: (shown[k], m.get(v)) for k, v in pairs.items()
                    if m.get(v) is None or shown[k] != int(m[v])}
            if not diff:
                print("page equals /metrics:", shown)
                confirmed = d.find_element(By.ID, "confirmed-lsn").text
                if not re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", confirmed):
                    print("FAIL: confirmed LSN shown as", repr(confirmed))
                    return 1
                procs = d.find_elements(By.CSS_SELECTOR, "#processes tbody tr")
                if len(procs) < 1:
                    print("FAIL: no process listed")
                    return 1
                return 0
            time.sleep(1)
        print("FAIL: page differs from /metrics (shown, metric):", diff)
        return 1
    finally:
        d.quit()


def cmd_retry(url, key, shot):
    d = browser()
    try:
        open_page(d, url)
        row = f'#dead tr[data-key="{key}"]'
        WebDriverWait(d, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, row)))
        d.find_element(By.CSS_SELECTOR, row + " button.inspect").click()
        WebDriverWait(d, 10).until(lambda x: key in x.find_element(By.ID, "inspect").text)
        d.find_element(By.CSS_SELECTOR, row + " button.retry").click()
        confirm = d.find_element(By.ID, "confirm")
        WebDriverWait(d, 10).until(lambda x: confirm.is_displayed())
        if key not in d.find_element(By.ID, "confirm-text").text:
            print("FAIL: the confirmation does not name", key)
            return 1
        d.save_screenshot(shot)
        d.find_element(By.ID, "confirm-yes").click()
        WebDriverWait(d, 15).until(
            lambda x: "back in the queue" in x.find_element(By.ID, "action-result").text)
        WebDriverWait(d, 60).until(
            lambda x: not x.find_elements(By.CSS_SELECTOR, row))
        print("retried", key, "from the page; screenshot:", shot)
        return 0
    finally:
        d.quit()


def main():
    a = sys.argv[1:]
    if a[:1] == ["load"] and len(a) == 3:
        return cmd_load(a[1], a[2])
    if a[:1] == ["compare"] and len(a) == 2:
        return cmd_compare(a[1])
    if a[:1] == ["retry"] and len(a) == 4:
        return cmd_retry(a[1], a[2], a[3])
    print(__doc__)
    return 64


if __name__ == "__main__":
    sys.exit(main())
