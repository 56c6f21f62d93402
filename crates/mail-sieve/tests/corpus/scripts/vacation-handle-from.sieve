require "vacation";
vacation :days 3 :from "bob@example.org" :handle "ooo-2024" :addresses ["bob@example.org", "robert@example.org"] "Away";
