-- OpenTelemetry: the W3C traceparent an execution was invoked with (null: not traced). Every
-- lease of the execution carries it to the worker, whose spans join the invoker's trace.
ALTER TABLE conductor_executions ADD COLUMN trace_context text;
