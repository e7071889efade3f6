local H = require "helpers"
describe("pfp-run", function()
  it("runs the counters example", function()
    local out, err, code = H.run({ "--context", "scripts/counters.json", "scripts/counters.lua",
      'counter1={"Operation":"ADD"}' })
    assert.are.equal(0, code, err)
    local records = H.decode(out)
    assert.are.equal(35, records[1].result.Answer)
  end)
end)
