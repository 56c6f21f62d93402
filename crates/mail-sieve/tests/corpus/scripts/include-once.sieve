require "include";
include :once "flagger";
include :once "flagger";
