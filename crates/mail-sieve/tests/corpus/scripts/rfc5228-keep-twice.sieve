keep; keep;
