# A code interpreter context (E2B's `run_code`), run in the session as
# `python3 -u -c <this> CONTEXT_ID CWD` by the control plane (api/e2b/interpreter.rs). It keeps
# one namespace across cells. Each line of stdin is a cell, {"id", "code", "env_vars"}; what it
# says goes to stdout as lines "\x1eberth-kernel {json}", each naming the cell: begin, stdout and
# stderr text, results, an error, the execution count, end. Anything else a cell's programs
# print straight to the process's stdout or stderr (a subprocess) is that cell's output too.
#
# Where the image has a Jupyter kernel (ipykernel and jupyter_client: berth/code-interpreter),
# cells run on it, with IPython's syntax (`!pip install`, `%timeit`) and rich results (a chart
# as a PNG); elsewhere on this process's own Python.
import ast
import json
import os
import re
import signal
import sys
import time
import traceback

MARK = "\x1eberth-kernel "
out = sys.stdout
os.chdir(sys.argv[2])


def emit(cell, kind, **fields):
    out.write(MARK + json.dumps({"id": cell, "type": kind, **fields}) + "\n")
    out.flush()


def now():
    return time.time_ns()


class Stream:
    """sys.stdout or sys.stderr while a cell runs: whole lines are events of that cell (print
    writes its text and its newline apart), the rest when flushed or when the cell ends."""

    def __init__(self, kind, cell):
        self.kind, self.cell, self.pending = kind, cell, ""

    def write(self, text):
        self.pending += text
        lines, newline, rest = self.pending.rpartition("\n")
        if newline:
            emit(self.cell, self.kind, text=lines + newline, timestamp=now())
            self.pending = rest
        return len(text)

    def flush(self):
        if self.pending:
            emit(self.cell, self.kind, text=self.pending, timestamp=now())
            self.pending = ""

    def isatty(self):
        return False


class PlainPython:
    """Cells on this process's own interpreter: the value of a last expression is its repr."""

    def __init__(self):
        self.namespace = {"__name__": "__main__"}
        self.count = 0

    def run(self, cell, code, env):
        self.count += 1
        saved = dict(os.environ)
        os.environ.update(env)
        sys.stdout, sys.stderr = Stream("stdout", cell), Stream("stderr", cell)
        try:
            tree = ast.parse(code, "<cell>", "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, "<cell>", "exec"), self.namespace)
            if last is not None:
                value = eval(compile(last, "<cell>", "eval"), self.namespace)
                if value is not None:
                    emit(cell, "result", text=repr(value), is_main_result=True)
        except BaseException as err:  # the cell's, whatever it is: the kernel goes on
            emit(cell, "error", name=type(err).__name__, value=str(err), traceback=traceback.format_exc())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = out, sys.__stderr__
            os.environ.clear()
            os.environ.update(saved)
        emit(cell, "number_of_executions", execution_count=self.count)


# Jupyter's MIME types as E2B's result fields.
MIME_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class JupyterKernel:
    """Cells on an IPython kernel of this context's own, through jupyter_client."""

    def __init__(self, manager_class):
        self.manager = manager_class(kernel_name="python3")
        self.manager.start_kernel(cwd=os.getcwd())
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, cell, code, env):
        if env:
            # For this cell only: set before it, put back after.
            setup = "import os as _berth_os\n_berth_saved = dict(_berth_os.environ)\n"
            setup += f"_berth_os.environ.update({json.dumps(env)})"
            self.client.execute(setup, silent=True, store_history=False)
        msg_id = self.client.execute(code)
        count = None
        while True:
            message = self.client.get_iopub_msg()
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                emit(cell, content["name"], text=content["text"], timestamp=now())
            elif kind in ("execute_result", "display_data"):
                fields = {MIME_FIELDS[m]: v for m, v in content["data"].items() if m in MIME_FIELDS}
                if isinstance(fields.get("json"), str):
                    fields["json"] = json.loads(fields["json"])
                emit(cell, "result", is_main_result=kind == "execute_result", **fields)
            elif kind == "error":
                trace = ANSI.sub("", "\n".join(content["traceback"]))
                emit(cell, "error", name=content["ename"], value=content["evalue"], traceback=trace)
            elif kind == "execute_input":
                count = content.get("execution_count")
            elif kind == "status" and content["execution_state"] == "idle":
                break
        if env:
            restore = "_berth_os.environ.clear()\n_berth_os.environ.update(_berth_saved)"
            self.client.execute(restore, silent=True, store_history=False)
        emit(cell, "number_of_executions", execution_count=count)


    def shutdown(self):
        self.manager.shutdown_kernel(now=True)


def kernel():
    try:
        from jupyter_client import KernelManager
    except ImportError:
        return PlainPython()
    return JupyterKernel(KernelManager)


runner = kernel()


def stop(signum, frame):
    """A context removed or restarted (SIGTERM): its Jupyter kernel goes with it."""
    if isinstance(runner, JupyterKernel):
        runner.shutdown()
    os._exit(0)


signal.signal(signal.SIGTERM, stop)
for line in sys.stdin:
    try:
        request = json.loads(line)
    except ValueError:
        continue
    cell = request.get("id", "")
    emit(cell, "begin")
    try:
        runner.run(cell, request.get("code", ""), request.get("env_vars") or {})
    except Exception as err:  # the kernel's own failure, said as the cell's
        emit(cell, "error", name=type(err).__name__, value=str(err), traceback=traceback.format_exc())
    emit(cell, "end")
