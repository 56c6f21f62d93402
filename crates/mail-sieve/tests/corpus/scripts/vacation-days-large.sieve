require "vacation";
vacation :days 365 "long";
