# A code interpreter context (E2B's `run_code`), run in the session as
# `python3 -u -c <this> CONTEXT_ID CWD` by the control plane (api/e2b/interpreter.rs). It keeps
# one namespace across cells, like a Jupyter kernel. Each line of stdin is a cell,
# {"id", "code", "env_vars"}; what it says goes to stdout as lines "\x1eberth-kernel {json}", each
# naming the cell: begin, stdout and stderr text, the value of a last expression (result), an
# error, the execution count, end. Anything else a cell's programs print straight to the
# process's stdout or stderr (a subprocess) is that cell's output too.
import ast
import json
import os
import sys
import time
import traceback

MARK = "\x1eberth-kernel "
out = sys.stdout
os.chdir(sys.argv[2])


def emit(cell, kind, **fields):
    out.write(MARK + json.dumps({"id": cell, "type": kind, **fields}) + "\n")
    out.flush()


class Stream:
    """sys.stdout or sys.stderr while a cell runs: whole lines are events of that cell (print
    writes its text and its newline apart), the rest when flushed or when the cell ends."""

    def __init__(self, kind, cell):
        self.kind, self.cell, self.pending = kind, cell, ""

    def write(self, text):
        self.pending += text
        lines, newline, rest = self.pending.rpartition("\n")
        if newline:
            emit(self.cell, self.kind, text=lines + newline, timestamp=time.time_ns())
            self.pending = rest
        return len(text)

    def flush(self):
        if self.pending:
            emit(self.cell, self.kind, text=self.pending, timestamp=time.time_ns())
            self.pending = ""

    def isatty(self):
        return False


namespace = {"__name__": "__main__"}
count = 0
for line in sys.stdin:
    try:
        request = json.loads(line)
    except ValueError:
        continue
    cell = request.get("id", "")
    emit(cell, "begin")
    count += 1
    saved = dict(os.environ)
    os.environ.update(request.get("env_vars") or {})
    sys.stdout, sys.stderr = Stream("stdout", cell), Stream("stderr", cell)
    try:
        tree = ast.parse(request.get("code", ""), "<cell>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<cell>", "exec"), namespace)
        if last is not None:
            value = eval(compile(last, "<cell>", "eval"), namespace)
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
    emit(cell, "number_of_executions", execution_count=count)
    emit(cell, "end")
